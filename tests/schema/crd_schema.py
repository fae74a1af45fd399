"""Validate objects against a CRD's structural `openAPIV3Schema`, as the apiserver would.

Two checks: JSON-schema validation (types, enums, required, formats the apiserver enforces) and
pruning: a field the schema does not declare would be silently dropped by the apiserver, so it
counts as a failure here.
"""

from __future__ import annotations

from typing import Any

import jsonschema


def pruned_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of fields the apiserver would prune from `obj` under `schema`."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if props is not None and key in props:
                out += pruned_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += pruned_fields(value, extra, f"{path}.{key}")
            elif extra is True:
                continue
            else:
                out.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            out += pruned_fields(item, schema["items"], f"{path}[{i}]")
    return out


def _int_or_string(schema: Any) -> Any:
    """`x-kubernetes-int-or-string` fields have no `type`; make that explicit for jsonschema."""
    if isinstance(schema, dict):
        fixed = {k: _int_or_string(v) for k, v in schema.items()}
        if schema.get("x-kubernetes-int-or-string") and "anyOf" not in schema:
            fixed["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return fixed
    if isinstance(schema, list):
        return [_int_or_string(v) for v in schema]
    return schema


# The integer formats the apiserver enforces on CRD fields (jsonschema knows neither).
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
def _int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def schema_errors(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Everything wrong with a custom resource `obj` (apiVersion/kind/metadata/spec)."""
    spec_schema = _int_or_string(schema["properties"]["spec"])
    validator = jsonschema.Draft7Validator(spec_schema, format_checker=FORMATS)
    errors = [
        f"spec.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(obj.get("spec", {}))
    ]
    errors += [f"pruned: spec{p}" for p in pruned_fields(obj.get("spec", {}), spec_schema)]
    extra_top = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
    errors += [f"pruned: {k}" for k in sorted(extra_top)]
    return errors
