"""Resource options for a component's children, through Pulumi's own channels.

A component takes the Kubernetes provider as `providers=` in its `opts` (children inherit it
from their parent) and waits for things through `opts.depends_on`, which Pulumi does not pass on
to children: a component hands it to the children that need it with `waiting_child`.

`retain_on_delete` is set on each child that must be kept, never left to inheritance. What
inheritance does is unsettled: Pulumi's docs say the option is not inherited, while the engine
pinned here (v3.274.1, `inheritFromParent` in resource/deploy/source_eval.go) copies a parent's
retainOnDelete to a child registered without one; the Python SDK (3.272) sends it unset. That
mismatch is pulumi/pulumi#19654, open, so either side may change; an explicit value holds both
ways (the golden files show which children leave it unset).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi


def given_depends_on(opts: pulumi.ResourceOptions | None) -> list[Any]:
    """What the component was told to wait for."""
    if opts is None or opts.depends_on is None:
        return []
    deps = opts.depends_on
    return list(deps) if isinstance(deps, list | tuple) else [deps]


def waiting_child(
    parent: pulumi.Resource,
    opts: pulumi.ResourceOptions | None,
    *,
    depends_on: Sequence[pulumi.Resource] = (),
    **extra: Any,
) -> pulumi.ResourceOptions:
    """Options of a child that must wait for what the component's `opts.depends_on` names."""
    deps = [*given_depends_on(opts), *depends_on]
    return pulumi.ResourceOptions(parent=parent, depends_on=deps or None, **extra)
