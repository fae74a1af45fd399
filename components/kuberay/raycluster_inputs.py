"""What the RayCluster builders take: plain frozen data, defined here so `components/` depends on
nothing above it. `infra/` maps the stack settings onto these (`infra/platform.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["dev", "prod"]


@dataclass(frozen=True)
class GroupResources:
    """A pod's Ray container size; memory is both request and limit."""

    cpu: str
    memory: str
    gpu: int = 0
    ray_start_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerGroup:
    """One autoscaled worker group."""

    name: str
    resources: GroupResources
    min_replicas: int
    max_replicas: int
    node_selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JupyterConfig:
    """JupyterLab in the head pod (dev only)."""

    port: int
    token_secret_name: str
    """The Kubernetes Secret holding the token under key `token`."""
    resources: GroupResources
    requirement: str
    """What the shared-packages installer adds when the image lacks JupyterLab."""
    token_digest: str | None = None
    """A digest of the token (`components.kuberay.jupyter.token_digest`), never the token: put
    on the head's pod template so a new token makes a new pod."""


@dataclass(frozen=True)
class RayClusterConfig:
    """Everything about the RayCluster that is not storage or identity (see `StorageWiring`)."""

    name: str
    ray_version: str
    image: str
    mode: Mode
    head: GroupResources
    worker_groups: tuple[WorkerGroup, ...] = ()
    runtime_env: Mapping[str, Any] = field(default_factory=dict)
    """The stack's default runtime_env (exported, and mounted on the head)."""
    shared_packages: tuple[str, ...] = ()
    """dev: pip requirements installed onto the shared file system, put on PYTHONPATH."""
    package_index: str | None = None
    """A PEP 503 simple index URL pip and uv use in every Ray pod (see `package_index_env`)."""
    idle_timeout_seconds: int = 60
    auth: Literal["token", "disabled"] = "token"
    jupyter: JupyterConfig | None = None
    autoscaler: GroupResources = field(
        default_factory=lambda: GroupResources(cpu="500m", memory="512Mi")
    )
    """The autoscaler sidecar's size (KubeRay's defaults unless the settings say otherwise)."""


@dataclass(frozen=True)
class NetworkAccess:
    """Who may reach the RayCluster's pods (see `components/kuberay/network_policy.py`)."""

    allow_from_namespaces: tuple[str, ...] = ()
    """Namespaces whose pods may reach every Ray port (e.g. notebooks)."""
    restrict_egress: bool = False
    extra_egress: tuple[Mapping[str, Any], ...] = ()
    """With `restrict_egress`: further egress rules the cloud's identity needs (e.g. the GKE
    metadata server), as NetworkPolicy egress rules."""
