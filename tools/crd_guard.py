"""Stop a deploy that would delete the KubeRay CRDs: deleting a CRD deletes every object of its
kind in the cluster (every RayCluster, RayJob, RayService, RayCronJob), whoever made them.

The program installs the CRDs as its Helm release `kuberay-crds`. A stack deployed by an earlier
version lists each CRD as a `CustomResourceDefinition` under a `kubernetes:yaml/v2:ConfigGroup`;
its first `up` fails at the release's install (Helm adopts nothing it did not create) and
changes nothing — unless the engine is told to go on after errors (`--continue-on-error`), when
it would then delete those CRDs as resources the program no longer has (in dev; prod's carry
retainOnDelete, inherited from their group, so the state only forgets them). Two guards, for
the two ways this project deploys:

- the deploy workflow: `pulumi preview --json` first, and this module refuses a plan that
  deletes or replaces a CRD or the CRDs' release:

      pulumi preview --json --stack prod > preview.json
      python -m tools.crd_guard preview.json     # exit 1 and one line per CRD, or nothing

- `tools/up`: `earlier_crds` finds them in the state before the engine runs.

Either way the README's one-time hand-over ("A stack deployed before the CRDs became a Helm
release") is the way on.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CRD_KIND = ":CustomResourceDefinition"
"""Any apiextensions version's CRD type token ends so."""
CRD_RELEASE = ("kubernetes:helm.sh/v3:Release", "kuberay-crds")
"""The type and Pulumi name of the CRDs' release (components/kuberay/operator.py)."""
EARLIER_GROUP = "kubernetes:yaml/v2:ConfigGroup"
DELETING = ("delete", "replace", "create-replacement", "delete-replaced")
"""Steps that delete a cluster object (JSON previews show a replace as `replace`)."""
HAND_OVER = "README: 'A stack deployed before the CRDs became a Helm release'"


def _type_and_name(urn: str) -> tuple[str, str]:
    """`urn:pulumi:S::P::A$B$TYPE::NAME` → (TYPE, NAME)."""
    parts = urn.split("::", 3)
    if len(parts) != 4:
        raise ValueError(f"not a Pulumi URN: {urn!r}")
    return parts[2].split("$")[-1], parts[3]


def crd_deletions(steps: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per step of a plan that deletes or replaces a CRD or the CRDs' release."""
    found = []
    for step in steps:
        urn, op = step.get("urn"), step.get("op")
        if not isinstance(urn, str) or op not in DELETING:
            continue
        if (step.get("oldState") or {}).get("retainOnDelete") is True:
            continue  # forgotten by the state, left in the cluster (prod)
        typ, name = _type_and_name(urn)
        if typ.endswith(CRD_KIND) or (typ, name) == CRD_RELEASE:
            found.append(f"the plan would {op} {typ.rsplit(':', 1)[-1]} {name}")
    return found


def earlier_crds(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """The CRDs a state lists under the earlier version's ConfigGroup (their Pulumi names)."""
    return [
        _type_and_name(r["urn"])[1]
        for r in resources
        if str(r.get("type") or "").endswith(CRD_KIND)
        and EARLIER_GROUP in str(r.get("parent") or "")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.crd_guard",
        description="Refuse a `pulumi preview --json` plan that deletes the KubeRay CRDs.",
    )
    parser.add_argument("preview", type=Path, help="the output of `pulumi preview --json`")
    args = parser.parse_args(argv)
    try:
        steps = json.loads(args.preview.read_text()).get("steps") or []
        found = crd_deletions(steps)
    except (OSError, ValueError, AttributeError) as err:
        print(
            f"error: {args.preview}: not a `pulumi preview --json` output ({err})", file=sys.stderr
        )
        return 2
    for line in found:
        print(
            f"error: {line}: deleting a CRD deletes every object of its kind in the cluster; "
            f"stopping before the deploy ({HAND_OVER})",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
