"""The stack files' JSON Schema (schema/ray-platform.schema.json): in step with the settings
models, every committed stack file valid against it (checked with `jsonschema`, in uv.lock's dev
group), and it refuses what the loader refuses by shape."""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from infra.clouds import SETTINGS_MODELS
from infra.clouds.schema import SCHEMA_FILE, main, rendered
from infra.settings.models import Settings
from tools.testing.pulumi_mocks import ROOT

STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
SECURE = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBB"}


def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _stack_file(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _errors(document: dict[str, Any]) -> list[str]:
    return [e.message for e in _validator().iter_errors(document)]


def test_the_committed_schema_is_what_the_models_give() -> None:
    assert SCHEMA_FILE.read_text() == rendered(), (
        "schema/ray-platform.schema.json is out of step with the settings models: "
        "run python -m infra.clouds.schema --write"
    )
    assert main([]) == 0


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_stack_file_validates(path: Path) -> None:
    assert _errors(_stack_file(path)) == []


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_stack_file_names_the_schema_for_editors(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=schema/ray-platform.schema.json"


def _dev(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(_stack_file(ROOT / "Pulumi.dev.yaml"))
    change(document["config"])
    return document


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update({"ray-platform:nope": 1}),
        lambda c: c.update({"ray-platform:local": {}}),
        lambda c: c.update({"ray-platform:cloud": "azure"}),
        lambda c: c.update({"ray-platform:mode": SECURE}),
        lambda c: c["ray-platform:ray"].update(workerGroups=[{"name": "x", "cpu": 1}]),
        lambda c: c["ray-platform:ray"]["head"].update(gpu=65),
        lambda c: c["ray-platform:aws"].update(region="us-west-2"),
        lambda c: c.pop("aws:region"),
        lambda c: c.pop("ray-platform:ray"),
    ],
    ids=[
        "unknown-key",
        "other-cloud-block",
        "unknown-cloud",
        "secret-where-none-may-be",
        "group-without-max",
        "too-many-gpus",
        "region-in-the-block",
        "no-region",
        "no-ray",
    ],
)
def test_the_schema_refuses_what_the_loader_refuses_by_shape(change: Any) -> None:
    assert _errors(_dev(change))


def test_secrets_may_be_pulumi_secrets_or_plain() -> None:
    assert not _errors(_dev(lambda c: c.update({"ray-platform:jupyterToken": SECURE})))
    assert not _errors(_dev(lambda c: c.update({"ray-platform:jupyterToken": "x" * 32})))
    local = copy.deepcopy(_stack_file(ROOT / "Pulumi.local.yaml"))
    local["config"]["ray-platform:local"]["objectStore"] = {
        "endpoint": "http://minio.minio:9000",
        "bucket": "ray",
        "accessKeyId": "rp0123",
        "secretAccessKey": SECURE,
    }
    assert not _errors(local)
    local["config"]["ray-platform:local"]["objectStore"]["accessKeyId"] = SECURE
    assert _errors(local)


def _models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    yield model
    for field in model.model_fields.values():
        for kind in (field.annotation, *typing.get_args(field.annotation)):
            for inner in (kind, *typing.get_args(kind)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    yield from _models(inner)


def test_every_setting_is_documented() -> None:
    """A field whose value is not itself a block carries a description (its docstring); a
    block's description is its class docstring."""
    blocks: list[type[BaseModel]] = [Settings, *(load() for load in SETTINGS_MODELS.values())]
    undocumented = sorted(
        f"{model.__name__}.{name}"
        for root in blocks
        for model in _models(root)
        for name, field in model.model_fields.items()
        if name not in Settings.LOADER_FIELDS
        and not field.description
        and not any(
            isinstance(k, type) and issubclass(k, BaseModel)
            for k in (field.annotation, *typing.get_args(field.annotation))
        )
    )
    undocumented_blocks = sorted(
        {m.__name__ for root in blocks for m in _models(root) if not m.__doc__}
    )
    assert undocumented == [] and undocumented_blocks == []
