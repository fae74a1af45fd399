"""Stack config → `Settings`: parse once, validate everything, report every problem on one line.

Nothing here talks to a cloud, or knows one: the caller passes each cloud's block model
(`CloudModels`; the cloud table in `infra/clouds/__init__.py` does, as `load_settings`). The
stack's cloud's block is validated with its model; the blocks of other clouds, and keys left in
places they have moved from, are errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

import pulumi
from pydantic import BaseModel, SecretStr, ValidationError

from infra.settings.errors import CONFIG_PREFIX, fail, fmt_value, pydantic_messages
from infra.settings.models import CloudSettings, Settings
from infra.settings.rules import RULES

CloudModels = Mapping[str, Callable[[], type[CloudSettings]]]
"""Each cloud's name → its block's model, loaded only when asked for (a local stack never loads
another cloud's modules)."""

NEUTRAL_KEYS = Settings.stack_file_keys()
_MODES = ("dev", "prod")
# Top-level keys whose value is a string, not a mapping. Which values are secret (never echoed)
# the models say, with SecretStr (`_masked`).
_STRING_KEYS = ("mode", "cloud", "jupyterToken")

# Keys that lived in the cloud-neutral blocks before each cloud got its own: where they went.
MOVED: dict[tuple[str, ...], str] = {
    ("kubernetes", "clusterName"): "<cloud>.clusterName",
    ("kubernetes", "kubeconfig"): "local.kubeconfig",
    ("kubernetes", "context"): "local.context",
    ("storage", "sharedFilesystem", "kmsKeyArn"): "aws.efs.kmsKeyArn",
    ("storage", "sharedFilesystem", "allowedSecurityGroups"): "aws.efs.allowedSecurityGroups",
    ("storage", "sharedFilesystem", "hostPath"): "local.hostPath",
}


def _scalars(clouds: CloudModels) -> dict[str, tuple[str, ...]]:
    return {"mode": _MODES, "cloud": tuple(sorted(clouds))}


def top_level_keys(clouds: CloudModels) -> tuple[str, ...]:
    """What a stack file may set under `ray-platform:`."""
    return (*NEUTRAL_KEYS, *sorted(clouds))


def parse_raw_config(config: Mapping[str, str], clouds: CloudModels) -> dict[str, Any]:
    """Stack config (`ns:key` → string, structured values as JSON) into plain data.

    Only `ray-platform:*` keys are read; an unknown one is an error.
    """
    known = top_level_keys(clouds)
    data: dict[str, Any] = {}
    errors = []
    for full_key in sorted(config):
        prefix, _, key = full_key.partition(":")
        if prefix != CONFIG_PREFIX:
            continue
        value = config[full_key]
        if key not in known:
            errors.append(f"{full_key} is not a known setting (known: {', '.join(known)})")
            continue
        if key in _STRING_KEYS:
            data[key] = value
            continue
        try:
            data[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            errors.append(f"{full_key} ({fmt_value(value)}) must be a YAML mapping")
            continue
        if not isinstance(data[key], dict):
            errors.append(f"{full_key} ({fmt_value(data[key])}) must be a YAML mapping")
            data.pop(key)
    if errors:
        raise fail(errors)
    return data


def _moved_key_errors(data: Mapping[str, Any], cloud: str, model: type[CloudSettings]) -> list[str]:
    aliases = sorted(f.alias or name for name, f in model.model_fields.items())
    errors = []
    for path, target in MOVED.items():
        node: Any = data
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            continue
        key = f"{CONFIG_PREFIX}:{'.'.join(path)}"
        where = target.replace("<cloud>", cloud)
        owner, _, field = where.partition(".")
        if owner == cloud and field.split(".")[0] not in aliases:
            errors.append(
                f"{key} is not a setting of cloud {cloud} "
                f"(its block {CONFIG_PREFIX}:{cloud} takes {', '.join(aliases)})"
            )
            continue
        note = "" if owner == cloud else f" (a setting of cloud {owner})"
        errors.append(f"{key} has moved to {CONFIG_PREFIX}:{where}{note}")
    return errors


def _masked(model: type[BaseModel], raw: Any) -> Any:
    """`raw` with the values of the model's secret fields (SecretStr, at any depth) replaced,
    for error lines: a secret given with the wrong type must not be echoed."""
    if not isinstance(raw, Mapping):
        return raw
    shown = dict(raw)
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if alias not in shown:
            continue
        for kind in (field.annotation, *get_args(field.annotation)):
            if kind is SecretStr:
                shown[alias] = "<secret>"
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                shown[alias] = _masked(kind, shown[alias])
    return shown


def _cloud_block(
    cloud: str, model: type[CloudSettings], raw: Any, config: Mapping[str, str]
) -> tuple[CloudSettings | None, list[str]]:
    """The cloud's block, with the values it reads from the provider's own config keys."""
    block = dict(raw) if isinstance(raw, Mapping) else {}
    errors = []
    for field, provider_key in model.PROVIDER_KEYS.items():
        alias = model.model_fields[field].alias or field
        if alias in block:
            errors.append(
                f"{CONFIG_PREFIX}:{cloud}.{alias} is not set here: it is {provider_key} "
                f"(pulumi config set {provider_key} …)"
            )
            continue
        if provider_key in config:
            block[alias] = config[provider_key]
        elif model.model_fields[field].is_required():
            errors.append(
                f"{provider_key} is required for cloud {cloud} (pulumi config set {provider_key} …)"
            )
    if errors:
        return None, errors
    try:
        return model.model_validate(block), []
    except ValidationError as err:
        messages = pydantic_messages(err, _masked(model, block), prefix=(cloud,))
        # A provider key's bad value is reported under its own name.
        for field, provider_key in model.PROVIDER_KEYS.items():
            alias = model.model_fields[field].alias or field
            messages = [
                m.replace(f"{CONFIG_PREFIX}:{cloud}.{alias} ", f"{provider_key} ", 1)
                for m in messages
            ]
        return None, messages


def load(
    config: Mapping[str, str],
    *,
    project: str,
    stack: str,
    clouds: CloudModels,
    base_dir: Path | None = None,
) -> Settings:
    """Parse and validate the whole stack config. Raises `SettingsError` (one line) on any problem.

    `base_dir` is where relative paths (runtime_env.working_dir) are resolved: the project dir.
    """
    data = parse_raw_config(config, clouds)
    scalars = _scalars(clouds)
    for scalar, allowed in scalars.items():
        if scalar not in data:
            raise fail(
                [f"{CONFIG_PREFIX}:{scalar} is required but not set (one of {', '.join(allowed)})"]
            )
    cloud = data["cloud"]
    if cloud not in clouds:
        raise fail(
            [
                f"{CONFIG_PREFIX}:cloud ({fmt_value(cloud)}) is not one of "
                f"{', '.join(scalars['cloud'])}"
            ]
        )
    model = clouds[cloud]()
    errors = _moved_key_errors(data, cloud, model)
    for other in sorted(set(clouds) - {cloud}):
        if other in data:
            errors.append(
                f"{CONFIG_PREFIX}:{other} is a setting of cloud {other}; this stack's cloud is "
                f"{cloud} (its block is {CONFIG_PREFIX}:{cloud})"
            )
    if errors:
        raise fail(errors)
    block, errors = _cloud_block(cloud, model, data.get(cloud), config)
    neutral = {k: v for k, v in data.items() if k in NEUTRAL_KEYS}
    try:
        settings = Settings.model_validate(
            {
                **neutral,
                "project": project,
                "stack": stack,
                # A placeholder keeps the neutral errors coming when the block itself is wrong.
                "cloud_settings": block or CloudSettings(),
            }
        )
    except ValidationError as err:
        raise fail(errors + pydantic_messages(err, _masked(Settings, neutral))) from None
    if errors:
        raise fail(errors)
    base = base_dir or Path.cwd()
    errors = [problem for rule in RULES for problem in rule(settings, base)]
    if errors:
        raise fail(errors)
    return settings


def from_pulumi(clouds: CloudModels) -> Settings:
    """Load settings for the running Pulumi program (stack config + project dir)."""
    from pulumi.runtime import config as runtime_config

    raw: dict[str, str] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return load(
        raw,
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        clouds=clouds,
        base_dir=Path.cwd(),
    )
