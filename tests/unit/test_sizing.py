"""What a RayCluster asks the scheduler for, and the local stack's sizing for a 2-CPU node."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.kuberay.sizing import (
    Requests,
    cpu_millis,
    memory_bytes,
    pod_requests,
    raycluster_requests,
)
from infra.clouds import load_settings
from infra.sizing import minimum_requests
from tools.testing.pulumi_mocks import cached_run, flatten, stack_config

GI = 2**30
MI = 2**20
TWO_CPU_NODE = Requests(cpu_millis=2000, memory_bytes=8 * GI)


def _settings(stack: str, config: dict[str, Any] | None = None) -> Any:
    return load_settings(
        flatten(config if config is not None else stack_config(stack)),
        project="ray-platform",
        stack=stack,
    )


def _with_jupyter(stack: str, enabled: bool = True) -> dict[str, Any]:
    """The stack with JupyterLab on (the local stack file turns it on) or off."""
    config = copy.deepcopy(stack_config(stack))
    config["ray-platform:ray"].setdefault("jupyter", {})["enabled"] = enabled
    return config


@pytest.mark.parametrize(
    ("quantity", "millis"), [("500m", 500), ("2", 2000), ("0.25", 250), ("1.5", 1500), (3, 3000)]
)
def test_cpu_quantities(quantity: str | int, millis: int) -> None:
    assert cpu_millis(quantity) == millis


@pytest.mark.parametrize(
    ("quantity", "size"),
    [("512Mi", 512 * MI), ("2Gi", 2 * GI), ("7.5Gi", 7.5 * GI), ("1G", 10**9), (1024, 1024)],
)
def test_memory_quantities(quantity: str | int, size: float) -> None:
    assert memory_bytes(quantity) == size


def test_bad_quantities_are_refused() -> None:
    with pytest.raises(ValueError, match="CPU quantity"):
        cpu_millis("two")
    with pytest.raises(ValueError, match="memory quantity"):
        memory_bytes("1 GB")


def _c(cpu: str, memory: str, **extra: Any) -> dict[str, Any]:
    return {"resources": {"requests": {"cpu": cpu, "memory": memory}}, **extra}


def test_pod_requests_count_sidecars_and_the_largest_init_container() -> None:
    pod = {
        "initContainers": [
            _c("100m", "64Mi"),
            _c("2", "1Gi"),  # the largest run-to-completion init container
            _c("250m", "1Gi", restartPolicy="Always"),  # a native sidecar: runs with the pod
            _c("1", "256Mi"),  # after the sidecar: counted with it
        ],
        "containers": [_c("500m", "2Gi"), _c("200m", "512Mi")],
    }
    # max(500m + 200m + 250m, 2000m, 1000m + 250m); max(2.5Gi + 1Gi, 1Gi, 256Mi + 1Gi)
    assert pod_requests(pod) == Requests(2000, int(3.5 * GI))


def test_limits_stand_for_missing_requests() -> None:
    pod = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    assert pod_requests(pod) == Requests(1000, GI)


def test_kuberay_adds_the_autoscaler_and_wait_gcs_ready() -> None:
    spec = {
        "enableInTreeAutoscaling": True,
        "headGroupSpec": {"template": {"spec": {"containers": [_c("1", "2Gi")]}}},
        "workerGroupSpecs": [
            {
                "groupName": "a",
                "minReplicas": 2,
                "template": {"spec": {"containers": [_c("100m", "128Mi")]}},
            }
        ],
    }
    found = raycluster_requests(spec)
    # No autoscalerOptions.resources: KubeRay's 500m / 512Mi.
    assert found.head == Requests(1500, int(2.5 * GI))
    # wait-gcs-ready (200m / 256Mi) is larger than this tiny worker.
    assert found.workers == (("a", 2, Requests(200, 256 * MI)),)
    assert found.total == Requests(1900, 3 * GI)
    assert found.summary() == (
        "head 1500m CPU, 2.50Gi memory + 2 x a (200m CPU, 0.25Gi memory) = 1900m CPU, 3.00Gi memory"
    )


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_the_settings_function_matches_the_rendered_raycluster(stack: str) -> None:
    """What `minimum_requests` computes from settings is what the program's RayCluster asks."""
    spec = cached_run(stack).one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    assert minimum_requests(_settings(stack)) == raycluster_requests(spec)


def test_the_autoscaler_is_sized_by_the_settings() -> None:
    spec = cached_run("local").one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    resources = spec["autoscalerOptions"]["resources"]
    assert resources == {
        "requests": {"cpu": "200m", "memory": "512Mi"},
        "limits": {"cpu": "200m", "memory": "512Mi"},
    }
    # Elsewhere KubeRay's own default, set explicitly.
    dev = cached_run("dev").one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    assert dev["autoscalerOptions"]["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}


@pytest.mark.parametrize("jupyter", [False, True])
def test_the_local_stack_fits_a_two_cpu_node_with_a_worker_to_spare(jupyter: bool) -> None:
    """Head (Ray, the autoscaler sidecar, JupyterLab when a working copy turns it on, the
    installer before them) and the minimum worker fit one 2-CPU node, and so does the second
    worker the autoscaler may add: a Pending worker never holds the CPU a new head needs."""
    settings = _settings("local", _with_jupyter("local", enabled=jupyter))
    found = minimum_requests(settings)
    assert found.head == (Requests(950, int(3.5 * GI)) if jupyter else Requests(700, int(2.5 * GI)))
    (group,) = settings.ray.worker_groups
    ((name, count, worker),) = found.workers
    assert (name, count) == ("cpu", group.min_replicas) == ("cpu", 1)
    at_most = found.head + worker.times(group.max_replicas)
    assert at_most.fits(TWO_CPU_NODE), found.summary()
    assert at_most.cpu_millis == (1950 if jupyter else 1700)


def test_the_local_head_runs_no_tasks() -> None:
    spec = cached_run("local").one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
