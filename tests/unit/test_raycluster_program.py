"""The RayCluster as the real program registers it (every stack, under mocks): what KubeRay, the
autoscaler and the Kubernetes provider do with it on a running cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ProgramRun, cached_run, run_program
from tests.gcp_mocks import GkeMocks

STACKS = ("dev", "prod", "local")


def _raycluster(run: ProgramRun) -> dict[str, Any]:
    return run.one("kubernetes:ray.io/v1:RayCluster").inputs


@pytest.mark.parametrize("stack", STACKS)
def test_apply_forces_ownership_back_from_the_autoscaler(stack: str) -> None:
    """`workerGroupSpecs` is an atomic list: after the autoscaler has patched `replicas`, only a
    forced server-side apply can change the RayCluster. pulumi-kubernetes forces when the
    object's own annotation says so, on the update and on its preview's dry-run alike."""
    annotations = _raycluster(cached_run(stack))["metadata"]["annotations"]
    assert annotations["pulumi.com/patchForce"] == "true"


@pytest.mark.parametrize("stack", ["gke-dev", "gke-prod"])
def test_apply_is_forced_on_gke_too(stack: str) -> None:
    run = run_program(stack, mocks=GkeMocks())
    assert _raycluster(run)["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"


def test_the_force_annotation_is_known_at_preview() -> None:
    """A preview sends the same annotation, so the dry-run is forced as well (a plain value,
    never an unknown the provider would skip)."""
    run = run_program("dev", preview=True)
    metadata = _raycluster(run)["metadata"]
    assert metadata["annotations"] == {"pulumi.com/patchForce": "true"}
