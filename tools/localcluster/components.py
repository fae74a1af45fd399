"""The components of the local control plane, one frozen record each.

A record says everything that differs between components: which binary (by its tools.build name),
which loopback ports it listens on, how its command line is built, how its health is probed,
which API objects must exist before the next component may start, whether it is supervised, and
(for MinIO) its environment and the one step run once it is healthy (creating the bucket).
Everything else (spawning, waiting, restarting, stopping) is the same for all of them and lives
in `process.py`. The argv builders are pure functions of a `Context`, so they are unit-tested
without binaries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tools import objectstore
from tools.certs import Pki
from tools.localcluster.state import Layout, LocalClusterError

LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
"""Only a value for the API server to allocate ClusterIPs from: nothing routes it."""
SERVICE_IP = "10.96.0.1"
"""ClusterIP of the `kubernetes` Service: the first address of the range."""
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
OPERATOR = "kuberay-operator"
MINIO = objectstore.MINIO
BUCKET = "ray"
"""The bucket the local control plane's MinIO is given (the local stack's artifact bucket)."""

# Controllers that only make sense with a cloud provider or with Nodes that have Pod CIDRs.
DISABLED_CONTROLLERS = (
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
    "node-route-controller",
    "node-ipam-controller",
)


@dataclass(frozen=True)
class Context:
    """What every command line and probe is built from: one cluster's files, ports and binaries."""

    layout: Layout
    pki: Pki
    ports: Mapping[str, int]
    """Port name (see `Component.ports`) → port on LOOPBACK."""
    binaries: Mapping[str, Path]
    """tools.build name → executable."""
    object_store: objectstore.S3Credentials | None = None
    """MinIO's root credentials, generated at `up` and kept (0600) in the state directory."""


@dataclass(frozen=True)
class Probe:
    """An HTTP(S) GET that answers 200 while the thing probed is healthy."""

    url: str
    client: str | None = None
    """Name of the client certificate in the PKI directory to present (None: anonymous).
    HTTPS is always verified against the cluster's CA."""


@dataclass(frozen=True)
class Component:
    """One process of the local control plane."""

    name: str
    """Its name in state.json, logs/<name>.log and `status`; also its tools.build name."""
    ports: tuple[str, ...]
    """Names of the loopback ports it listens on (allocated when the cluster starts)."""
    argv: Callable[[Context], list[str]]
    """Its command line (argv[0] is the binary)."""
    health: Callable[[Mapping[str, int]], Probe]
    """Its own health endpoint, given the cluster's ports."""
    ready_objects: tuple[tuple[str, str], ...] = ()
    """(description, API path) of objects that must exist, after it is healthy, before the next
    component starts: the API server's own bootstrap, or what a controller creates."""
    supervised: bool = False
    """Restarted whenever it exits (see `process.supervise`)."""
    counts_for_health: bool = True
    """Whether `status` calls the cluster unhealthy while its probe fails."""
    env: Callable[[Context], Mapping[str, str]] = lambda _ctx: {}
    """Extra environment variables (kept out of state.json: they may hold credentials)."""
    after_ready: Callable[[Context], None] | None = None
    """Run once it is healthy, before the next component starts (MinIO: create the bucket)."""

    def endpoint(self, ports: Mapping[str, int]) -> str:
        """`scheme://host:port` it serves its health endpoint on, for people."""
        url = urlsplit(self.health(ports).url)
        return f"{url.scheme}://{url.netloc}"


def api_probe(ports: Mapping[str, int], path: str) -> Probe:
    """A GET of `path` on the API server as the admin (200: the object exists)."""
    return Probe(f"https://{LOOPBACK}:{ports['apiserver']}{path}", client="admin")


# ---------------------------------------------------------------------------------- command lines


def etcd_argv(ctx: Context) -> list[str]:
    client = f"http://{LOOPBACK}:{ctx.ports['etcd-client']}"
    peer = f"http://{LOOPBACK}:{ctx.ports['etcd-peer']}"
    return [
        str(ctx.binaries[ETCD]),
        "--name=localcluster",
        f"--data-dir={ctx.layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=localcluster={peer}",
        "--initial-cluster-state=new",
        # The data is deleted by `down` anyway; skipping fsync makes a big difference on CI disks.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(ctx: Context) -> list[str]:
    pki = ctx.pki
    return [
        str(ctx.binaries[APISERVER]),
        f"--etcd-servers=http://{LOOPBACK}:{ctx.ports['etcd-client']}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ctx.ports['apiserver']}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=RBAC",
        # Endpoints may not hold loopback addresses, so publishing 127.0.0.1 as the `kubernetes`
        # Service's endpoint fails (and logs) every 10s; nothing runs in-cluster to use it anyway.
        "--endpoint-reconciler-type=none",
        # No --enable-admission-plugins: the defaults (PodSecurity, ServiceAccount, ...) need
        # neither a scheduler nor Nodes, and the ServiceAccount plugin is satisfied by the
        # controller manager's service-account controller.
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager_argv(ctx: Context) -> list[str]:
    pki = ctx.pki
    return [
        str(ctx.binaries[CONTROLLER_MANAGER]),
        f"--kubeconfig={ctx.layout.controller_manager_kubeconfig}",
        # No --authentication/authorization-kubeconfig: delegated authentication needs the API
        # server's request-header CA (an aggregation front proxy we do not have) and logs errors
        # without it; /healthz, the only endpoint used here, is always allowed.
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ctx.ports['controller-manager']}",
        f"--tls-cert-file={pki.controller_manager_serving_cert}",
        f"--tls-private-key-file={pki.controller_manager_serving_key}",
        "--leader-elect=false",
        # Each controller acts as its own service account, with the permissions RBAC's bootstrap
        # policy gives it (as kubeadm does).
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--controllers=*," + ",".join(f"-{name}" for name in DISABLED_CONTROLLERS),
        "--profiling=false",
    ]


def operator_argv(ctx: Context) -> list[str]:
    return [
        str(ctx.binaries[OPERATOR]),
        f"--kubeconfig={ctx.layout.kubeconfig}",
        "--enable-leader-election=false",
        f"--metrics-addr={LOOPBACK}:{ctx.ports['operator-metrics']}",
        f"--health-probe-bind-address={LOOPBACK}:{ctx.ports['operator-probe']}",
        "--log-stdout-encoder=console",
        # While its CRDs are missing it logs an error every 10s per kind; without stack traces.
        "--zap-stacktrace-level=panic",
    ]


def _credentials(ctx: Context) -> objectstore.S3Credentials:
    if ctx.object_store is None:
        raise LocalClusterError("no object store credentials were generated for minio")
    return ctx.object_store


def minio_endpoint(ports: Mapping[str, int]) -> str:
    """The S3 API of the local control plane's MinIO."""
    return f"http://{LOOPBACK}:{ports['minio']}"


def minio_argv(ctx: Context) -> list[str]:
    return objectstore.minio_argv(
        ctx.binaries[MINIO], ctx.layout.minio_data, ctx.ports["minio"], ctx.ports["minio-console"]
    )


def minio_env(ctx: Context) -> dict[str, str]:
    return objectstore.minio_env(_credentials(ctx))


def create_bucket(ctx: Context) -> None:
    """Create BUCKET (idempotent: MinIO keeps its data directory across restarts)."""
    objectstore.create_s3_bucket(minio_endpoint(ctx.ports), _credentials(ctx), BUCKET)


# ------------------------------------------------------------------------------------ the records

ETCD_COMPONENT = Component(
    name=ETCD,
    ports=("etcd-client", "etcd-peer"),
    argv=etcd_argv,
    health=lambda ports: Probe(f"http://{LOOPBACK}:{ports['etcd-client']}/health"),
)

APISERVER_COMPONENT = Component(
    name=APISERVER,
    ports=("apiserver",),
    argv=apiserver_argv,
    health=lambda ports: Probe(f"https://{LOOPBACK}:{ports['apiserver']}/readyz", client="admin"),
    # Created by the API server's bootstrap controller; the next components assume it.
    ready_objects=(("namespace default", "/api/v1/namespaces/default"),),
)

CONTROLLER_MANAGER_COMPONENT = Component(
    name=CONTROLLER_MANAGER,
    ports=("controller-manager",),
    argv=controller_manager_argv,
    health=lambda ports: Probe(f"https://{LOOPBACK}:{ports['controller-manager']}/healthz"),
    # The ServiceAccount admission plugin refuses Pods until their namespace's default
    # ServiceAccount exists, so "up" is only done once the controller created it.
    ready_objects=(
        ("serviceaccount default/default", "/api/v1/namespaces/default/serviceaccounts/default"),
    ),
)

OPERATOR_COMPONENT = Component(
    name=OPERATOR,
    ports=("operator-metrics", "operator-probe"),
    argv=operator_argv,
    health=lambda ports: Probe(f"http://{LOOPBACK}:{ports['operator-probe']}/readyz"),
    # KubeRay's operator exits while its CRDs are missing; the program under test installs them.
    supervised=True,
    # ... so its probe failing is expected on a cluster that has no CRDs yet.
    counts_for_health=False,
)

MINIO_COMPONENT = Component(
    name=MINIO,
    ports=("minio", "minio-console"),
    argv=minio_argv,
    health=lambda ports: Probe(minio_endpoint(ports) + objectstore.MINIO_READY_PATH),
    env=minio_env,
    after_ready=create_bucket,
)
"""The S3-compatible server behind the local stack's artifact bucket (tools/stack.py wires it)."""

CONTROL_PLANE = (ETCD_COMPONENT, APISERVER_COMPONENT, CONTROLLER_MANAGER_COMPONENT)
"""In start order: each needs the ones before it (`down` stops them in reverse)."""

BY_NAME = {c.name: c for c in (*CONTROL_PLANE, OPERATOR_COMPONENT, MINIO_COMPONENT)}


def components(*, with_operator: bool, with_object_store: bool = True) -> tuple[Component, ...]:
    """The components of a cluster, in start order."""
    operator = (OPERATOR_COMPONENT,) if with_operator else ()
    store = (MINIO_COMPONENT,) if with_object_store else ()
    return (*CONTROL_PLANE, *operator, *store)


def port_names(wanted: tuple[Component, ...]) -> list[str]:
    """Every port the components listen on, each once, in start order."""
    return list(dict.fromkeys(port for c in wanted for port in c.ports))
