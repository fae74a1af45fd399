"""The JSON Schema of a stack file's `config:` mapping, generated from the settings models.

Editors that read JSON Schema (the YAML language server: each stack file names the schema in its
first line) complete the `ray-platform:*` keys, show each field's description (the docstrings in
the models) and mark a key or value the models would refuse by type. The models stay the one
source: the committed file is regenerated from them (`python -m infra.clouds.schema --write`, which
hands this module every cloud's block) and tests/unit/test_settings_schema.py fails when it is out
of step. The schema checks shapes, types, enums and bounds; the rules with more to say (image
references, quantities, cross-field rules) stay the loader's, which reports them in one line.

Nothing here knows a cloud: the caller passes the blocks' models, as to `infra.settings.load`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from infra.settings.errors import CONFIG_PREFIX
from infra.settings.load import CloudModels
from infra.settings.models import Settings

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SECRET_DEF = "PulumiSecret"
PULUMI_SECRET = {
    "description": "A Pulumi secret as `pulumi config set --secret` writes it (encrypted).",
    "type": "object",
    "properties": {"secure": {"type": "string"}},
    "required": ["secure"],
    "additionalProperties": False,
}
# What pydantic writes for a SecretStr field: such a value may be a Pulumi secret in the file.
_SECRET_STR = {"type": "string", "format": "password", "writeOnly": True}


class _Generator(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        # The key is its own title; "Noncurrentversiondays" beside it says nothing more.
        return False


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _one_line_descriptions(node: Any) -> Any:
    """Docstrings wrap at 100 columns; an editor's hover wraps by itself."""
    if isinstance(node, dict):
        return {
            k: " ".join(v.split())
            if k == "description" and isinstance(v, str)
            else _one_line_descriptions(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_one_line_descriptions(v) for v in node]
    return node


def _secrets_allowed(node: Any) -> Any:
    """Every SecretStr value may also be written as `{secure: ...}`."""
    if isinstance(node, dict):
        if all(node.get(k) == v for k, v in _SECRET_STR.items()):
            return {"anyOf": [dict(_SECRET_STR), _ref(SECRET_DEF)]}
        return {k: _secrets_allowed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_secrets_allowed(v) for v in node]
    return node


def _referenced(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref.removeprefix("#/$defs/")
        for value in node.values():
            yield from _referenced(value)
    elif isinstance(node, list):
        for value in node:
            yield from _referenced(value)


def _reachable(defs: dict[str, Any], root: Any) -> dict[str, Any]:
    """The definitions `root` reaches (the loader-only fields' models are left out)."""
    seen: set[str] = set()
    todo = list(_referenced(root))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_referenced(defs[name]))
    return {name: defs[name] for name in sorted(seen)}


def stack_file_schema(clouds: CloudModels) -> dict[str, Any]:
    """The schema of a whole stack file (`config:` and the rest Pulumi writes there)."""
    blocks = {cloud: load() for cloud, load in sorted(clouds.items())}
    _, generated = models_json_schema(
        [(Settings, "validation"), *((model, "validation") for model in blocks.values())],
        by_alias=True,
        ref_template="#/$defs/{model}",
        schema_generator=_Generator,
    )
    defs: dict[str, Any] = generated["$defs"]
    neutral = defs.pop(Settings.__name__)["properties"]
    config: dict[str, Any] = {
        f"{CONFIG_PREFIX}:{key}": neutral[key] for key in Settings.stack_file_keys()
    }
    config[f"{CONFIG_PREFIX}:cloud"] = {**neutral["cloud"], "enum": sorted(blocks)}
    config[f"{CONFIG_PREFIX}:cloud"].pop("type", None)
    conditions = []
    for cloud, model in blocks.items():
        block = defs[model.__name__]
        # A value the cloud's provider reads too is set under the provider's own key.
        for field, provider_key in model.PROVIDER_KEYS.items():
            alias = model.model_fields[field].alias or field
            config[provider_key] = block["properties"].pop(alias)
            block["required"] = [r for r in block.get("required", []) if r != alias]
            if not block["required"]:
                block.pop("required")
        key = f"{CONFIG_PREFIX}:{cloud}"
        config[key] = _ref(model.__name__)
        others = {f"{CONFIG_PREFIX}:{o}": False for o in blocks if o != cloud}
        then: dict[str, Any] = {"properties": others}
        required = [key] if block.get("required") else []
        required += [
            p for f, p in model.PROVIDER_KEYS.items() if model.model_fields[f].is_required()
        ]
        if required:
            then["required"] = required
        conditions.append(
            {
                "if": {
                    "properties": {f"{CONFIG_PREFIX}:cloud": {"const": cloud}},
                    "required": [f"{CONFIG_PREFIX}:cloud"],
                },
                "then": then,
            }
        )
    config_schema: dict[str, Any] = {
        "description": (
            f"Stack config. The `{CONFIG_PREFIX}:` keys are this program's settings; keys of "
            "other namespaces (aws:, gcp:, pulumi:) are the providers' and the engine's."
        ),
        "type": "object",
        "properties": config,
        # Any other namespace's key; a `ray-platform:` key not listed above is an error.
        "patternProperties": {f"^(?!{CONFIG_PREFIX}:)": {}},
        "additionalProperties": False,
        "required": [
            f"{CONFIG_PREFIX}:{key}"
            for key in Settings.stack_file_keys()
            if Settings.model_fields[_field_of(key)].is_required()
        ],
        "allOf": conditions,
    }
    config_schema = _secrets_allowed(config_schema)
    defs = {**_secrets_allowed(defs), SECRET_DEF: PULUMI_SECRET}
    schema: dict[str, Any] = _one_line_descriptions(
        {
            "$schema": DIALECT,
            "title": "Pulumi.<stack>.yaml of ray-platform",
            "description": (
                "Generated from the settings models by `python -m infra.clouds.schema --write`; "
                "do not edit by hand."
            ),
            "type": "object",
            "properties": {"config": config_schema},
            "$defs": _reachable(defs, config_schema),
        }
    )
    return schema


def _field_of(key: str) -> str:
    """The Settings field a stack-file key (an alias) names."""
    for name, field in Settings.model_fields.items():
        if (field.alias or name) == key:
            return name
    raise KeyError(key)
