"""The one shape of every settings error: `ray-platform:<key> (<value as JSON>) <problem>`.

Also the translation of pydantic's validation errors into that shape, so a newcomer reads one line
that names the full key, never a pydantic report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pulumi
from pydantic import ValidationError

CONFIG_PREFIX = "ray-platform"
"""The project's config prefix (`ray-platform:<key>` in a stack file)."""


class SettingsError(pulumi.RunError):
    """A stack setting is wrong. The message is one line naming the full key and the bad value.

    Subclasses `pulumi.RunError` so the engine prints the message alone, without a traceback.
    """


class KeyedError(ValueError):
    """Raised inside a model validator that knows the sub-key at fault (e.g. a list element)."""

    def __init__(self, key: str, value: object, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.value = value
        self.problem = problem


def fmt_value(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def message(key: str, value: object, problem: str) -> str:
    """One settings problem, for a key under `ray-platform:`."""
    return f"{CONFIG_PREFIX}:{key} ({fmt_value(value)}) {problem}"


def setting_error(key: str, value: object, problem: str) -> SettingsError:
    """A SettingsError for one key, for problems found outside the settings (cloud lookups)."""
    return SettingsError(message(key, value, problem))


def fail(messages: list[str]) -> SettingsError:
    """All problems of one load, joined on one line."""
    return SettingsError("; ".join(m.replace("\n", " ") for m in messages))


def dotted(path: tuple[int | str, ...]) -> str:
    """`("ray", "workerGroups", 0, "name")` → `ray.workerGroups[0].name`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _lookup(data: Any, path: tuple[int | str, ...]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False, None
    return True, data


_FRIENDLY = {
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "string_type": 'must be a string (quote it in YAML, e.g. "1.5.1")',
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


def pydantic_messages(
    err: ValidationError, raw: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> list[str]:
    """Each pydantic error as one settings line; `prefix` is where `raw` sits in the config."""
    messages = []
    for e in err.errors():
        loc = prefix + tuple(p for p in e["loc"] if p not in ("function-after", "function-before"))
        ctx_err = e.get("ctx", {}).get("error")
        if isinstance(ctx_err, KeyedError):
            sub = tuple(
                int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", ctx_err.key) if p
            )
            messages.append(message(dotted(loc + sub), ctx_err.value, ctx_err.problem))
            continue
        found, value = _lookup(raw, loc[len(prefix) :])
        key = f"{CONFIG_PREFIX}:{dotted(loc)}"
        if e["type"] == "extra_forbidden":
            messages.append(f"{key} is not a known setting (check its spelling)")
        elif e["type"] == "missing":
            messages.append(f"{key} is required but not set")
        else:
            problem = _FRIENDLY.get(e["type"]) or str(e["msg"]).removeprefix("Value error, ")
            shown = f" ({fmt_value(value)})" if found else ""
            messages.append(f"{key}{shown} {problem}")
    return messages
