"""The URNs to `pulumi up --target` so a stack's image repository exists before an image is pushed
to it, read from `pulumi preview --json` (works for a stack never deployed: its steps are creates).

    pulumi preview --json --stack prod > preview.json
    python -m tools.preview_targets preview.json      # one URN a line, or nothing

It prints the URN of every step whose resource is an image repository component or one of its
children (a child's URN carries its parent's type in its type chain: `...::ray-platform:aws:
ImageRepository$aws:ecr/repository:Repository::app-image-repository`), when at least one of them
would change; nothing when all are unchanged or the stack has no repository (dev). Targeting the
whole subtree, not the component with `--target-dependents`, keeps the update to the repository:
Ray's pods depend on it, and would be dependents too. The engine adds the providers and the stack
itself to a targeted update on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

IMAGE_REPOSITORY_TYPES = ("ray-platform:aws:ImageRepository", "ray-platform:gcp:ImageRepository")
"""The type tokens of the image repository components (components/aws/ecr_repository.py,
components/gcp/artifact_registry.py)."""
UNCHANGED = "same"


def type_chain(urn: str) -> list[str]:
    """`urn:pulumi:STACK::PROJECT::PARENT$...$TYPE::NAME` → [PARENT, ..., TYPE]."""
    parts = urn.split("::", 3)
    if len(parts) != 4 or not parts[0].startswith("urn:pulumi:"):
        raise ValueError(f"not a Pulumi URN: {urn!r}")
    return parts[2].split("$")


def subtree_targets(steps: Iterable[Mapping[str, Any]], types: Sequence[str]) -> list[str]:
    """The URNs of the steps on resources of `types` or under them, in preview order, when any of
    those steps is not `same`; else []."""
    urns: dict[str, None] = {}
    changed = False
    for step in steps:
        urn = step.get("urn")
        if not isinstance(urn, str) or not any(t in type_chain(urn) for t in types):
            continue
        urns[urn] = None
        changed = changed or step.get("op") != UNCHANGED
    return list(urns) if changed else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.preview_targets",
        description="URNs to target so the stack's image repository is created or updated first.",
    )
    parser.add_argument("preview", type=Path, help="the output of `pulumi preview --json`")
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        help="a component type token (repeatable); default: the image repository components",
    )
    args = parser.parse_args(argv)
    try:
        digest = json.loads(args.preview.read_text(encoding="utf-8"))
        steps = digest.get("steps") or []
        if not isinstance(steps, list):
            raise ValueError("its steps are not a list")
        targets = subtree_targets(
            [s for s in steps if isinstance(s, Mapping)], args.types or IMAGE_REPOSITORY_TYPES
        )
    except (OSError, ValueError, AttributeError) as err:
        print(f"{args.preview}: not a `pulumi preview --json` result: {err}", file=sys.stderr)
        return 2
    for urn in targets:
        print(urn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
