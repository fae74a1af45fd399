"""Resource options for a component's children, through Pulumi's own channels.

A component takes the Kubernetes provider as `providers=` in its `opts` (children inherit it
from their parent) and waits for things through `opts.depends_on`. Pulumi passes neither
`depends_on` nor `retain_on_delete` on to children, so a component hands `depends_on` to the
children that need it with `waiting_child`.
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
