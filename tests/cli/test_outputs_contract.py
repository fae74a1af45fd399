"""The output contract end to end: each stack's outputs, as the program writes them (run under
the mocks), are what the command's loader reads, under the contract's names (contract/outputs.py).
The program and the command share only those names, so this is where they are held together."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, get_args

import pytest

import contract.outputs as out
from cli import outputs
from tests.unit.test_settings_fuzz import deployed_local
from tools.testing.pulumi_mocks import ROOT, cached_run, run_program, stack_config

STACKS = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml")
)


def _without_token_auth() -> dict[str, Any]:
    config = copy.deepcopy(stack_config("dev"))
    config["ray-platform:ray"]["auth"] = "disabled"
    return config


VARIANTS = {
    # tools/up's local stack has a bucket (MinIO) and an objectStoreEndpoint; the file's has none.
    "local-deployed": lambda: run_program("local", deployed_local()),
    "dev-auth-disabled": lambda: run_program("dev", _without_token_auth()),
}


@functools.cache
def exported(name: str) -> dict[str, Any]:
    run = VARIANTS[name]() if name in VARIANTS else cached_run(name)
    return dict(run.outputs)


def _load(raw: dict[str, Any], tmp_path: Path) -> outputs.StackOutputs:
    # As `pulumi stack output --json --show-secrets > outputs.json` writes them.
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return outputs.load(stack=None, outputs_file=path, bucket=None, address=None)


@pytest.mark.parametrize("name", [*STACKS, *VARIANTS])
def test_the_loader_reads_what_each_stack_exports(name: str, tmp_path: Path) -> None:
    raw = exported(name)
    loaded = _load(raw, tmp_path)
    assert loaded.mode == raw[out.MODE]
    assert loaded.namespace == raw[out.NAMESPACE]
    assert loaded.cluster_name == raw[out.RAY_CLUSTER_NAME]
    assert loaded.ray_address == raw[out.RAY_ADDRESS]
    assert loaded.port_forward_command == raw[out.DASHBOARD_PORT_FORWARD]
    assert loaded.runtime_env == json.loads(raw[out.RUNTIME_ENV])
    assert loaded.shared_packages == tuple(json.loads(raw[out.SHARED_PACKAGES]))
    assert loaded.bucket_uri == raw.get(out.BUCKET_URI)
    assert loaded.object_store_endpoint == raw.get(out.OBJECT_STORE_ENDPOINT)
    # What `image build` reads (cli/commands/image.py, through outputs.text).
    for key in (out.IMAGE_REPOSITORY, out.BASE_IMAGE):
        assert outputs.text(raw, key, "stack", required=False) == raw.get(key)
    assert raw[out.RAY_AUTH_MODE] in out.AUTH_MODES
    assert loaded.token_auth == (raw[out.RAY_AUTH_MODE] == out.AUTH_TOKEN)


@pytest.mark.parametrize("name", ["dev", "dev-auth-disabled"])
def test_a_stack_from_before_the_auth_mode_output_is_read_as_before(
    name: str, tmp_path: Path
) -> None:
    """Stacks deployed before `rayAuthMode` lack it: token auth is then inferred from
    `authTokenCommand`, which the program exports with token auth alone, so both ways agree."""
    raw = exported(name)
    old = {k: v for k, v in raw.items() if k != out.RAY_AUTH_MODE}
    assert (out.AUTH_TOKEN_COMMAND in old) == (raw[out.RAY_AUTH_MODE] == out.AUTH_TOKEN)
    assert _load(old, tmp_path).token_auth == _load(raw, tmp_path).token_auth


def test_the_auth_mode_outweighs_the_command_for_people(tmp_path: Path) -> None:
    raw = {**exported("dev"), out.RAY_AUTH_MODE: out.AUTH_DISABLED}
    assert out.AUTH_TOKEN_COMMAND in raw
    assert _load(raw, tmp_path).token_auth is False


def test_every_output_the_command_reads_is_exported_by_some_stack() -> None:
    """No name in the contract the program has stopped exporting (or never spelled the same)."""
    names = set().union(*(exported(n) for n in [*STACKS, *VARIANTS]))
    assert set(out.READ) <= names, sorted(set(out.READ) - names)


def test_the_contracts_values_are_the_settings() -> None:
    """`mode` and `rayAuthMode` are exported straight from the settings: the contract's values
    are the settings' own."""
    from infra.settings.models import Mode, RaySettings

    assert get_args(Mode) == out.MODES
    assert get_args(RaySettings.model_fields["auth"].annotation) == out.AUTH_MODES
