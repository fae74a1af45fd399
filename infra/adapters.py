"""What every cloud adapter returns to the composition."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.wiring import StorageWiring


@dataclass
class CloudStorage:
    """Storage + identity built by a cloud adapter."""

    wiring: StorageWiring
    """Handed to the RayCluster builder."""
    dependencies: list[pulumi.Resource] = field(default_factory=list)
    """What Ray pods need to exist first (claim, ServiceAccount)."""
    outputs: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    """Stack outputs this adapter contributes (bucket URI, file system id, role ARN...)."""
