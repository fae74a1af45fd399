"""One way for tests to make builder inputs: settings-shaped data, validated, then mapped."""

from __future__ import annotations

from typing import Any

from components.kuberay.raycluster_inputs import Mode, RayClusterConfig
from infra.platform import ray_cluster_config
from infra.settings import RaySettings

BASE: dict[str, Any] = {
    "version": "2.60.0",
    "image": "rayproject/ray:2.60.0-py311",
    "head": {"cpu": "2", "memory": "8Gi"},
}


def ray_config(mode: Mode = "dev", **overrides: Any) -> RayClusterConfig:
    """A RayClusterConfig from `ray:` settings (camelCase keys as in a stack file)."""
    return ray_cluster_config(RaySettings.model_validate({**BASE, **overrides}), mode)
