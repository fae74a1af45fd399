"""The cloud table: one entry per cloud, each a package `infra/clouds/<cloud>/`.

An entry names two things by import path, so nothing is imported until a stack uses that cloud (a
local stack never loads `pulumi_aws`):

- `settings`: the model of the cloud's block `ray-platform:<cloud>` (pydantic only, light);
- `adapter`: the `CloudAdapter` class (`infra/clouds/adapter.py`) that looks the cluster up and
  builds storage and identity with the cloud's SDK.

Adding a cloud is a new package plus one line here. The settings loader knows no cloud: it gets
the blocks' models from here (`load_settings`, `settings_from_pulumi`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.settings.load import CloudModels, from_pulumi, load
from infra.settings.models import CloudSettings, Settings

if TYPE_CHECKING:
    from infra.clouds.adapter import CloudAdapter


@dataclass(frozen=True)
class CloudEntry:
    settings: str
    """`module:Class` of the block's model."""
    adapter: str
    """`module:Class` of the adapter."""


CLOUDS: dict[str, CloudEntry] = {
    "aws": CloudEntry(
        "infra.clouds.aws.settings:AwsSettings", "infra.clouds.aws.adapter:AwsAdapter"
    ),
    "local": CloudEntry(
        "infra.clouds.local.settings:LocalSettings", "infra.clouds.local.adapter:LocalAdapter"
    ),
    "gcp": CloudEntry(
        "infra.clouds.gcp.settings:GcpSettings", "infra.clouds.gcp.adapter:GcpAdapter"
    ),
}


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def settings_model(cloud: str) -> type[CloudSettings]:
    model: type[CloudSettings] = _load(CLOUDS[cloud].settings)
    return model


SETTINGS_MODELS: CloudModels = {name: functools.partial(settings_model, name) for name in CLOUDS}
"""What the settings loader is given: each cloud's block model, imported when first asked for."""


def load_settings(
    config: Mapping[str, str], *, project: str, stack: str, base_dir: Path | None = None
) -> Settings:
    """`infra.settings.load` with every cloud of the table."""
    return load(config, project=project, stack=stack, clouds=SETTINGS_MODELS, base_dir=base_dir)


def settings_from_pulumi() -> Settings:
    """The running program's settings (stack config + project dir), every cloud of the table."""
    return from_pulumi(SETTINGS_MODELS)


def adapter_for(settings: Settings) -> CloudAdapter:
    """The stack's cloud adapter, constructed (its lookups run, and may raise SettingsError)."""
    adapter_class: type[CloudAdapter] = _load(CLOUDS[settings.cloud].adapter)
    return adapter_class(settings)
