"""The pack: every rule, and the policy config that makes them mandatory for prod stacks."""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, Policy, PolicyPack

from policy import efs, gcp, iam, kubernetes, raycluster, registry, s3, stack
from policy.common import DEV, MODE_SCHEMA, PROD

NAME = "ray-platform"
POLICIES: list[Policy] = [
    *efs.POLICIES,
    *s3.POLICIES,
    *gcp.POLICIES,
    *registry.POLICIES,
    *iam.POLICIES,
    *raycluster.POLICIES,
    *kubernetes.POLICIES,
    *stack.POLICIES,
]


def moded_ids() -> list[str]:
    return [p.name for p in POLICIES if p.config_schema is MODE_SCHEMA]


def config_for(mode: str) -> dict[str, Any]:
    """The `--policy-pack-config` document for a stack of `mode` (policy/config/<mode>.json)."""
    level = EnforcementLevel.MANDATORY if mode == PROD else EnforcementLevel.ADVISORY
    config: dict[str, Any] = {"all": level.value}
    config.update({rule: {"mode": mode} for rule in moded_ids()})
    return config


def serve() -> None:
    """Serve the pack to the engine (blocks). Without config every rule is advisory."""
    PolicyPack(name=NAME, policies=POLICIES, enforcement_level=EnforcementLevel.ADVISORY)


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    # `python -m policy.pack` rewrites the committed config files from the rule list.
    out = Path(__file__).resolve().parent / "config"
    for m in (DEV, PROD):
        (out / f"{m}.json").write_text(json.dumps(config_for(m), indent=2) + "\n")
    sys.exit(0)
