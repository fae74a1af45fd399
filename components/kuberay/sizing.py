"""What a RayCluster asks the scheduler for: the head pod plus every group's minimum of workers.
Plain data in, numbers out (no Pulumi), so a caller can compare it with a node's allocatable
before `up`.

Each pod is counted as Kubernetes sizes it (KEP-753): the larger of (every regular container +
every native sidecar) and, for each run-to-completion init container, itself plus the sidecars
started before it. Each pod is counted as KubeRay 1.6.1 builds it (ray-operator
controllers/ray/common/pod.go): the head gets the autoscaler sidecar, sized from
`autoscalerOptions.resources` (KubeRay's default 500m / 512Mi without it), and every worker the
`wait-gcs-ready` init container (200m / 256Mi). Containers an admission webhook adds (GKE's GCS
FUSE sidecar) are not counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

AUTOSCALER_DEFAULT = {"cpu": "500m", "memory": "512Mi"}
"""KubeRay's autoscaler sidecar resources when `autoscalerOptions.resources` is not set."""
WAIT_GCS_READY = {"cpu": "200m", "memory": "256Mi"}
"""The init container KubeRay adds to every worker pod."""

_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def cpu_millis(quantity: str | int | float) -> int:
    """`500m` → 500, `2` → 2000, `0.25` → 250 (rounded up, as Kubernetes does)."""
    match = _CPU.match(str(quantity))
    if match is None:
        raise ValueError(f"{quantity!r} is not a CPU quantity such as 500m or 2")
    number, milli = match.groups()
    return math.ceil(float(number) * (1 if milli else 1000))


def memory_bytes(quantity: str | int | float) -> int:
    """`512Mi` → 536870912, `1G` → 10**9, `7.5Gi` → 8053063680."""
    match = _MEMORY.match(str(quantity))
    if match is None:
        raise ValueError(f"{quantity!r} is not a memory quantity such as 512Mi")
    number, unit = match.groups()
    return math.ceil(float(number) * _UNITS[unit or ""])


@dataclass(frozen=True)
class Requests:
    """CPU and memory a pod (or several) asks the scheduler for."""

    cpu_millis: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes)

    def times(self, n: int) -> Requests:
        return Requests(self.cpu_millis * n, self.memory_bytes * n)

    def fits(self, allocatable: Requests) -> bool:
        return (
            self.cpu_millis <= allocatable.cpu_millis
            and self.memory_bytes <= allocatable.memory_bytes
        )

    def __str__(self) -> str:
        return f"{self.cpu_millis}m CPU, {self.memory_bytes / 2**30:.2f}Gi memory"


def _larger(a: Requests, b: Requests) -> Requests:
    return Requests(max(a.cpu_millis, b.cpu_millis), max(a.memory_bytes, b.memory_bytes))


def container_requests(container: Mapping[str, Any]) -> Requests:
    """A container's requests; a resource with a limit but no request requests its limit (the
    API server's defaulting)."""
    resources = container.get("resources") or {}
    asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return Requests(
        cpu_millis(asked["cpu"]) if "cpu" in asked else 0,
        memory_bytes(asked["memory"]) if "memory" in asked else 0,
    )


def pod_requests(pod_spec: Mapping[str, Any]) -> Requests:
    """The pod's effective requests as the scheduler counts them (native sidecars included)."""
    sidecars_so_far = Requests()
    init_peak = Requests()
    for init in pod_spec.get("initContainers") or []:
        if init.get("restartPolicy") == "Always":
            sidecars_so_far = sidecars_so_far + container_requests(init)
        else:
            init_peak = _larger(init_peak, container_requests(init) + sidecars_so_far)
    regular = Requests()
    for container in pod_spec.get("containers") or []:
        regular = regular + container_requests(container)
    return _larger(regular + sidecars_so_far, init_peak)


@dataclass(frozen=True)
class ClusterRequests:
    """The head pod and each worker group at its minimum."""

    head: Requests
    workers: tuple[tuple[str, int, Requests], ...]
    """(group, minReplicas, one pod's requests)."""

    @property
    def total(self) -> Requests:
        total = self.head
        for _, count, pod in self.workers:
            total = total + pod.times(count)
        return total

    def summary(self) -> str:
        """One line, e.g. `head 950m CPU, 3.50Gi memory + 1 x cpu (500m CPU, 2.00Gi memory)
        = 1450m CPU, 5.50Gi memory`."""
        parts = [f"head {self.head}"]
        parts += [f"{count} x {group} ({pod})" for group, count, pod in self.workers if count]
        return f"{' + '.join(parts)} = {self.total}"


def _with_containers(
    pod_spec: Mapping[str, Any],
    *,
    containers: Iterable[Mapping[str, Any]] = (),
    init: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "initContainers": [*(pod_spec.get("initContainers") or []), *init],
        "containers": [*(pod_spec.get("containers") or []), *containers],
    }


def raycluster_requests(spec: Mapping[str, Any]) -> ClusterRequests:
    """What a RayCluster `spec` asks for at its smallest: the head, and every worker group's
    `minReplicas` (what KubeRay creates before the autoscaler asks for more)."""
    head_pod = spec["headGroupSpec"]["template"]["spec"]
    extra = []
    if spec.get("enableInTreeAutoscaling"):
        options = spec.get("autoscalerOptions") or {}
        resources = options.get("resources") or {"requests": AUTOSCALER_DEFAULT}
        extra.append({"name": "autoscaler", "resources": resources})
    head = pod_requests(_with_containers(head_pod, containers=extra))
    workers = []
    for group in spec.get("workerGroupSpecs") or []:
        pod = _with_containers(
            group["template"]["spec"],
            init=[{"name": "wait-gcs-ready", "resources": {"requests": WAIT_GCS_READY}}],
        )
        workers.append((group["groupName"], int(group.get("minReplicas") or 0), pod_requests(pod)))
    return ClusterRequests(head, tuple(workers))
