"""The smallest a stack's RayCluster can be, from its settings alone: the head pod and every worker
group's minimum, as the scheduler counts them (`components/kuberay/sizing.py`). For a check before
`up` (e.g. against a node's allocatable); nothing is registered and no cloud is asked.

Storage preparation init containers an adapter adds (the local stack's wait-for-shared-dir,
50m / 64Mi) run before the others and are smaller than the pods they prepare, so they change
nothing here; a webhook's sidecar (GCS FUSE on GKE) is not counted.
"""

from __future__ import annotations

from components.kuberay.raycluster_spec import raycluster_spec
from components.kuberay.sizing import ClusterRequests, Requests, raycluster_requests
from components.wiring import StorageWiring
from infra.clouds.adapter import HEAD_SERVICE_ACCOUNT, SHARED_CLAIM
from infra.platform import ray_cluster_config
from infra.settings import Settings

__all__ = ["ClusterRequests", "Requests", "minimum_requests"]


def minimum_requests(settings: Settings) -> ClusterRequests:
    """What the stack's RayCluster asks the scheduler for before the autoscaler adds workers:
    the head (Ray, the autoscaler sidecar, Jupyter and the installer when on) and each worker
    group's `minReplicas` pods. `.total` to compare, `.summary()` for a one-line message."""
    # No token: its digest (an annotation) asks for nothing, and costs a scrypt.
    config = ray_cluster_config(settings.ray, settings.mode)
    fs = settings.storage.shared_filesystem
    wiring = StorageWiring(
        service_account_name=HEAD_SERVICE_ACCOUNT,
        shared_claim_name=SHARED_CLAIM if fs.enabled else None,
        shared_mount_path=fs.mount_path if fs.enabled else None,
    )
    return raycluster_requests(raycluster_spec(config, wiring, "runtime-env"))
