"""A throwaway Kubernetes cluster on this machine, for the e2e tests and local development: a
control plane on loopback, and with `--node` (root) one real node (see `node.py`).

    python -m tools.devcluster.localcluster up [--node]|down|status|kubeconfig|restart NAME...
                                            [--dir DIR]

`up` starts etcd, kube-apiserver, kube-controller-manager and (by default) the KubeRay operator and
MinIO (an S3-compatible server with the bucket `ray`, credentials generated into the state
directory; `object_store()` returns them) as detached processes listening on 127.0.0.1 only, on
ports chosen when it starts (so several clusters can coexist), writes an admin kubeconfig and
prints `export KUBECONFIG=...`. Without a node there is no scheduler and no kubelet: Pods stay
Pending, everything else (namespaces, Deployments and ReplicaSets, garbage collection, service
accounts, KubeRay's Pods and Services) is reconciled. `down` stops exactly the processes `up`
started and deletes the cluster's data (MinIO's included).

Layout: `components.py` (one record per component: binary, ports, argv, health, readiness),
`process.py` (spawn, supervise, probe, stop: the same code for every component), `state.py`
(state directory, state.json, lock, kubeconfigs, objectstore.json), `cluster.py`
(up/down/status/object_store), `cli.py`. The binaries come from `tools.build.ensure` (built from
Go modules). Linux only: `down` and `status` identify processes through /proc.
"""

from tools.devcluster.localcluster.cli import main
from tools.devcluster.localcluster.cluster import (
    ClusterStatus,
    ComponentStatus,
    down,
    kubeconfig,
    object_store,
    restart,
    shared_dir,
    status,
    up,
)
from tools.devcluster.localcluster.components import (
    APISERVER,
    BUCKET,
    CONTROLLER_MANAGER,
    ETCD,
    LOOPBACK,
    MINIO,
    OPERATOR,
)
from tools.devcluster.localcluster.process import READY_TIMEOUT, STOP_TIMEOUT
from tools.devcluster.localcluster.state import LocalClusterError, ObjectStore, default_state_dir

__all__ = [
    "APISERVER",
    "BUCKET",
    "CONTROLLER_MANAGER",
    "ETCD",
    "LOOPBACK",
    "MINIO",
    "OPERATOR",
    "READY_TIMEOUT",
    "STOP_TIMEOUT",
    "ClusterStatus",
    "ComponentStatus",
    "LocalClusterError",
    "ObjectStore",
    "default_state_dir",
    "down",
    "kubeconfig",
    "main",
    "object_store",
    "restart",
    "shared_dir",
    "status",
    "up",
]
