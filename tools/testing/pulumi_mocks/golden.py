"""A stack's registrations as a reviewable text: `tests/golden/<stack>.yaml`.

One entry per registered resource (type, name, parent, the options the program sent, inputs),
ordered by URN so the file does not depend on the order registrations reach the monitor. Secret
values are masked, values unknown under mocks marked, resource references and the parent named by
their URN without the stack prefix, and the checkout's path written as `<root>`: the file says
what the program asks for, the same on every machine. A long text (the KubeRay CRDs' YAML) is
written as its digest: that it changed shows, and the file stays readable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pulumi.runtime import rpc

from tools.testing.pulumi_mocks import ROOT, Registration

SECRET = "[secret]"
UNKNOWN = "[unknown]"
LONG_TEXT = 4096
"""Characters above which a string is written as its digest."""


def _short(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type chain>::<name>` → `<type chain>::<name>`."""
    return urn.split("::", 2)[2] if urn.startswith("urn:pulumi:") else urn


def _provider(ref: str) -> str:
    """A provider reference (`<urn>::<id>`) without the id the mocks made up."""
    return _short(ref.rsplit("::", 1)[0]) if ref else ""


def plain(value: Any) -> Any:
    """Registration inputs as YAML-ready data (see the module docstring)."""
    if isinstance(value, Mapping):
        signature = value.get(rpc._special_sig_key)
        if signature == rpc._special_secret_sig:
            return SECRET
        if signature == rpc._special_resource_sig:
            return {"resource": _short(str(value.get("urn", "")))}
        if signature is not None:  # an asset or archive
            return {k: plain(v) for k, v in value.items() if k != rpc._special_sig_key}
        return {str(k): plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float):
        # The wire carries every number as a double.
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        if value == rpc.UNKNOWN:
            return UNKNOWN
        if len(value) > LONG_TEXT:
            digest = hashlib.sha256(value.encode()).hexdigest()
            return f"[{len(value)} characters, sha256 {digest}]"
        return value.replace(str(ROOT), "<root>")
    return value


def _options(reg: Registration) -> dict[str, Any]:
    """The options the program set (left out when at their default)."""
    options = {
        # None: unset, so the engine takes the parent's (pulumi#19654 for retainOnDelete).
        "protect": reg.protect_given,
        "retainOnDelete": reg.retain_on_delete_given,
        "provider": _provider(reg.provider),
        "dependsOn": sorted({_short(d) for d in reg.dependencies}),
        "deleteBeforeReplace": reg.delete_before_replace,
        "replaceOnChanges": sorted(reg.replace_on_changes),
        "ignoreChanges": sorted(reg.ignore_changes),
        "additionalSecretOutputs": sorted(reg.additional_secret_outputs),
        "deletedWith": _short(reg.deleted_with),
        "aliases": [plain(a) for a in reg.aliases],
        "version": reg.version,
    }
    return {k: v for k, v in options.items() if v not in (None, False, "", [])}


def entries(registrations: Iterable[Registration]) -> list[dict[str, Any]]:
    out = []
    for reg in sorted(registrations, key=lambda r: r.urn):
        entry: dict[str, Any] = {"type": reg.type, "name": reg.name}
        parent = _short(reg.parent)
        if not parent.startswith("pulumi:pulumi:Stack::"):
            entry["parent"] = parent
        entry["custom"] = reg.custom
        options = _options(reg)
        if options:
            entry["options"] = options
        entry["inputs"] = plain(reg.inputs)
        out.append(entry)
    return out


def render(registrations: Iterable[Registration]) -> str:
    return yaml.safe_dump(entries(registrations), sort_keys=False, width=100, allow_unicode=True)
