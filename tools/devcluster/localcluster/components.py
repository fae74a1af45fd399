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

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from infra.cache import cache_root
from tools.devcluster import objectstore
from tools.devcluster.certs import NODE_CLIENTS, NODE_NAME, Pki
from tools.devcluster.localcluster import node
from tools.devcluster.localcluster.state import Layout, LocalClusterError

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
    node: node.NodePaths | None = None
    """The node's files, when the cluster has a node (root only); None: control plane only."""

    @property
    def host(self) -> str:
        """Where the API server, MinIO and the package mirror listen: loopback, or with a node
        the pod network's bridge address (pods must reach them; the host reaches it too)."""
        return node.NODE_IP if self.node is not None else LOOPBACK


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
    before_start: Callable[[Context], None] | None = None
    """Run before it is started (CoreDNS: its RBAC objects)."""
    built: bool = True
    """Its binary comes from tools.build under its name (False: argv[0] is given)."""

    def endpoint(self, ports: Mapping[str, int]) -> str:
        """`scheme://host:port` it serves its health endpoint on, for people."""
        url = urlsplit(self.health(ports).url)
        return f"{url.scheme}://{url.netloc}"


def api_probe(ports: Mapping[str, int], path: str, host: str = LOOPBACK) -> Probe:
    """A GET of `path` on the API server as the admin (200: the object exists)."""
    return Probe(f"https://{host}:{ports['apiserver']}{path}", client="admin")


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
    if ctx.node is not None:
        return node_apiserver_argv(ctx)
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


def node_apiserver_argv(ctx: Context) -> list[str]:
    """With a node: served on the bridge address, which is also the `kubernetes` Service's
    endpoint (pods, e.g. KubeRay's autoscaler sidecar, reach the API through it); kubelets are
    authorized by the Node authorizer and NodeRestriction, and called with a client certificate."""
    pki = ctx.pki
    plain = apiserver_argv(replace(ctx, node=None))
    dropped = (
        "--bind-address=",
        "--advertise-address=",
        "--endpoint-reconciler-type=",
        "--authorization-mode=",
    )
    kept = [arg for arg in plain if not arg.startswith(dropped)]
    return [
        *kept,
        f"--bind-address={node.NODE_IP}",
        f"--advertise-address={node.NODE_IP}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={pki.ca_cert.parent / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki.ca_cert.parent / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
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


def minio_endpoint(ports: Mapping[str, int], host: str = LOOPBACK) -> str:
    """The S3 API of the local control plane's MinIO."""
    return f"http://{host}:{ports['minio']}"


def minio_argv(ctx: Context) -> list[str]:
    return objectstore.minio_argv(
        ctx.binaries[MINIO],
        ctx.layout.minio_data,
        ctx.ports["minio"],
        ctx.ports["minio-console"],
        host=ctx.host,
    )


def minio_env(ctx: Context) -> dict[str, str]:
    return objectstore.minio_env(_credentials(ctx))


def create_bucket(ctx: Context) -> None:
    """Create BUCKET (idempotent: MinIO keeps its data directory across restarts)."""
    objectstore.create_s3_bucket(minio_endpoint(ctx.ports, ctx.host), _credentials(ctx), BUCKET)


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
"""The S3-compatible server behind the local stack's artifact bucket (tools/devcluster/stack.py
wires it)."""

CONTROL_PLANE = (ETCD_COMPONENT, APISERVER_COMPONENT, CONTROLLER_MANAGER_COMPONENT)
"""In start order: each needs the ones before it (`down` stops them in reverse)."""


# --------------------------------------------------------------------------------------- the node

SCHEDULER = "kube-scheduler"
REGISTRY = "registry"
PACKAGE_MIRROR = "package-mirror"
COREDNS = "coredns"
CONTAINERD = "containerd"
SHIM = "containerd-shim-runc-v2"
KUBELET = "kubelet"
KUBE_PROXY = "kube-proxy"
KUBE_ROUTER = "kube-router"
KUBECTL = "kubectl"
PAUSE = "pause"
NODE_BINARIES = (
    SCHEDULER,
    REGISTRY,
    COREDNS,
    CONTAINERD,
    SHIM,
    KUBELET,
    KUBE_PROXY,
    KUBE_ROUTER,
    KUBECTL,
    PAUSE,
)
"""tools.build names the node needs (the shim and kubectl are not processes of their own)."""


def node_kubeconfig(layout: Layout, stem: str) -> Path:
    """The kubeconfig of a node component (written at `up` with its client certificate)."""
    return layout.root / f"{stem}.kubeconfig"


def _node(ctx: Context) -> node.NodePaths:
    if ctx.node is None:
        raise LocalClusterError("a node component was asked for on a cluster without a node")
    return ctx.node


def scheduler_argv(ctx: Context) -> list[str]:
    return [
        str(ctx.binaries[SCHEDULER]),
        f"--kubeconfig={node_kubeconfig(ctx.layout, 'scheduler')}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ctx.ports['scheduler']}",
        f"--tls-cert-file={ctx.layout.pki / 'scheduler-serving.crt'}",
        f"--tls-private-key-file={ctx.layout.pki / 'scheduler-serving.key'}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def registry_config_file(ctx: Context) -> Path:
    return _node(ctx).root / "registry.yml"


def registry_argv(ctx: Context) -> list[str]:
    return [str(ctx.binaries[REGISTRY]), "serve", str(registry_config_file(ctx))]


def registry_address(ports: Mapping[str, int]) -> str:
    """host:port of the local registry (containerd pulls from it; the image tools push to it)."""
    return f"{LOOPBACK}:{ports['registry']}"


def package_mirror_url(ports: Mapping[str, int]) -> str:
    """The PEP 503 index pods install from (a pull-through cache of PyPI on the host)."""
    return f"http://{node.NODE_IP}:{ports['package-mirror']}/index/"


def package_mirror_argv(ctx: Context) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "proxpi.server",
        "run",
        f"--host={node.NODE_IP}",
        f"--port={ctx.ports['package-mirror']}",
        "--no-reload",
        "--no-debugger",
    ]


def package_mirror_cache() -> Path:
    """Kept across `down`: a cache of what pods installed (like a company's mirror)."""
    return cache_root() / "package-mirror"


def registry_storage() -> Path:
    """Kept across `down`: the images built for the node (rebuilding them takes minutes)."""
    return cache_root() / "registry"


def package_mirror_env(_ctx: Context) -> dict[str, str]:
    return {
        "PROXPI_CACHE_DIR": str(package_mirror_cache()),
        # Serve every file from the cache, however long the download takes: by default proxpi
        # redirects the client to PyPI after 0.9s, and pods have no route there.
        "PROXPI_DOWNLOAD_TIMEOUT": "900",
        "PROXPI_LOGGING_LEVEL": "WARNING",
    }


def coredns_argv(ctx: Context) -> list[str]:
    return [str(ctx.binaries[COREDNS]), "-conf", str(_node(ctx).corefile)]


def containerd_argv(ctx: Context) -> list[str]:
    return [str(ctx.binaries[CONTAINERD]), "--config", str(_node(ctx).containerd_config)]


def containerd_env(ctx: Context) -> dict[str, str]:
    # containerd finds its shim on PATH.
    shim_dir = str(ctx.binaries[SHIM].parent)
    return {"PATH": os.pathsep.join([shim_dir, os.environ.get("PATH", "/usr/sbin:/usr/bin")])}


def kubelet_argv(ctx: Context) -> list[str]:
    paths = _node(ctx)
    return [
        str(ctx.binaries[KUBELET]),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={node_kubeconfig(ctx.layout, 'kubelet')}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={node.NODE_IP}",
        f"--root-dir={paths.kubelet_root}",
        "--v=1",
    ]


def kube_proxy_argv(ctx: Context) -> list[str]:
    return [
        str(ctx.binaries[KUBE_PROXY]),
        f"--kubeconfig={node_kubeconfig(ctx.layout, 'kube-proxy')}",
        f"--hostname-override={NODE_NAME}",
        f"--cluster-cidr={node.POD_CIDR}",
        "--proxy-mode=iptables",
        f"--healthz-bind-address={LOOPBACK}:{ctx.ports['kube-proxy-healthz']}",
        f"--metrics-bind-address={LOOPBACK}:{ctx.ports['kube-proxy-metrics']}",
        # Leave the host's conntrack sysctls alone (0 = do not change them).
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0s",
        "--conntrack-tcp-timeout-close-wait=0s",
        # NodePorts on the bridge only: on loopback they need route_localnet on every interface.
        f"--nodeport-addresses={node.NODE_IP}/32",
    ]


def kube_router_argv(ctx: Context) -> list[str]:
    return [
        str(ctx.binaries[KUBE_ROUTER]),
        f"--kubeconfig={node_kubeconfig(ctx.layout, 'kube-router')}",
        f"--hostname-override={NODE_NAME}",
        # The NetworkPolicy controller only: the CNI bridge plugin is the pod network and
        # kube-proxy the Service proxy (kube-router's router would run BGP, its proxy IPVS).
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--enable-cni=false",
        "--enable-ipv6=false",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        # It binds its health port on every address (":port"): node.ingress_rules drops what
        # comes to it from other interfaces. No metrics port (0 = off).
        f"--health-port={ctx.ports['kube-router-health']}",
        "--metrics-port=0",
        # Policies are applied on every change; the periodic full resync only repairs drift.
        "--iptables-sync-period=1m",
    ]


KUBE_ROUTER_RULES = [
    # kube-router starts informers for all of these whatever controllers run (v2.1.0,
    # pkg/cmd/kube-router.go), and waits for their caches before it enforces anything.
    {
        "apiGroups": [""],
        "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": ["list", "watch"],
    },
]


COREDNS_RULES = [
    {
        "apiGroups": [""],
        "resources": ["services", "endpoints", "pods", "namespaces"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
]


def _cluster_role(ctx: Context, user: str, rules: list[dict[str, list[str]]]) -> None:
    """A ClusterRole named for `user` with `rules`, bound to that user (a node component's
    client certificate names it)."""
    from tools.devcluster.kube import Kube

    kube = Kube(ctx.layout.kubeconfig)
    rbac = "rbac.authorization.k8s.io/v1"
    kube.apply(
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": user}, "rules": rules},
        manager="localcluster",
    )
    kube.apply(
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": user},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": user,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
        manager="localcluster",
    )


def coredns_rbac(ctx: Context) -> None:
    """What CoreDNS's kubernetes plugin reads."""
    _cluster_role(ctx, NODE_CLIENTS["coredns"][0], COREDNS_RULES)


def kube_router_rbac(ctx: Context) -> None:
    """What kube-router's informers read."""
    _cluster_role(ctx, NODE_CLIENTS["kube-router"][0], KUBE_ROUTER_RULES)


def push_pause_image(ctx: Context) -> None:
    """The sandbox image, built from our pause binary and pushed as registry.k8s.io's."""
    from tools import image

    try:
        built = image.ensure_pause(ctx.binaries[PAUSE])
        image.push(built, registry_address(ctx.ports))
    except image.ImageError as err:
        raise LocalClusterError(f"pause image: {err}") from err


NODE_READY_TIMEOUT = 120.0


def _poll(check: Callable[[], str | None], timeout: float, failure: Callable[[str], str]) -> None:
    """Call `check` every half second until it returns None (done); past `timeout`, raise with
    `failure(last reason check gave)`."""
    import time

    deadline = time.monotonic() + timeout
    reason = "no answer yet"
    while time.monotonic() < deadline:
        why = check()
        if why is None:
            return
        reason = why
        time.sleep(0.5)
    raise LocalClusterError(failure(reason))


def wait_node_ready(ctx: Context) -> None:
    """The node reports Ready (its network plugin is up): Pods can be scheduled and started."""
    from tools.devcluster.kube import Kube

    kube = Kube(ctx.layout.kubeconfig)

    def not_ready() -> str | None:
        found = kube.get(f"/api/v1/nodes/{NODE_NAME}") or {}
        for cond in found.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready":
                if cond.get("status") == "True":
                    return None
                return f"{cond.get('reason')}: {cond.get('message')}"
        return "no status yet"

    _poll(
        not_ready,
        NODE_READY_TIMEOUT,
        lambda reason: f"node {NODE_NAME} not Ready after {NODE_READY_TIMEOUT:.0f}s ({reason})",
    )


SCHEDULER_COMPONENT = Component(
    name=SCHEDULER,
    ports=("scheduler",),
    argv=scheduler_argv,
    health=lambda ports: Probe(f"https://{LOOPBACK}:{ports['scheduler']}/healthz"),
)

REGISTRY_COMPONENT = Component(
    name=REGISTRY,
    ports=("registry",),
    argv=registry_argv,
    health=lambda ports: Probe(f"http://{registry_address(ports)}/v2/"),
    after_ready=push_pause_image,
)
"""The OCI registry containerd resolves docker.io and registry.k8s.io through (images are built
and pushed by tools/image; nothing is pulled from the internet)."""

PACKAGE_MIRROR_COMPONENT = Component(
    name=PACKAGE_MIRROR,
    ports=("package-mirror",),
    argv=package_mirror_argv,
    health=lambda ports: Probe(f"http://{node.NODE_IP}:{ports['package-mirror']}/health"),
    env=package_mirror_env,
    built=False,
)
"""A pull-through cache of PyPI on the bridge: the pods' only package index (they have no route
off the machine); the host process fetches from PyPI, a registry this machine may use."""

COREDNS_COMPONENT = Component(
    name=COREDNS,
    ports=("coredns-health", "coredns-ready"),
    argv=coredns_argv,
    health=lambda ports: Probe(f"http://{LOOPBACK}:{ports['coredns-ready']}/ready"),
    before_start=coredns_rbac,
)

CONTAINERD_COMPONENT = Component(
    name=CONTAINERD,
    ports=("containerd-metrics",),
    argv=containerd_argv,
    health=lambda ports: Probe(f"http://{LOOPBACK}:{ports['containerd-metrics']}/v1/metrics"),
    env=containerd_env,
)

KUBELET_COMPONENT = Component(
    name=KUBELET,
    ports=(),
    argv=kubelet_argv,
    health=lambda _ports: Probe(f"http://{LOOPBACK}:{node.KUBELET_HEALTHZ_PORT}/healthz"),
    ready_objects=((f"node {NODE_NAME}", f"/api/v1/nodes/{NODE_NAME}"),),
)

KUBE_PROXY_COMPONENT = Component(
    name=KUBE_PROXY,
    ports=("kube-proxy-healthz", "kube-proxy-metrics"),
    argv=kube_proxy_argv,
    health=lambda ports: Probe(f"http://{LOOPBACK}:{ports['kube-proxy-healthz']}/healthz"),
    after_ready=wait_node_ready,
)

POLICY_ENGINE_TIMEOUT = 120.0


def wait_policy_engine(_ctx: Context) -> None:
    """kube-router's /healthz answers 200 from its first moment (its health controller starts
    healthy, before the informers sync or the policy controller exists): the node enforces
    NetworkPolicies only once the policy controller has hooked its chain into FORWARD. No pod
    of the stack starts before that."""
    _poll(
        lambda: None if node.hooked(KUBE_ROUTER_FORWARD) else "not hooked",
        POLICY_ENGINE_TIMEOUT,
        lambda _reason: (
            f"kube-router did not install its {KUBE_ROUTER_FORWARD} chain within "
            f"{POLICY_ENGINE_TIMEOUT:.0f}s: NetworkPolicies would not be enforced"
        ),
    )


KUBE_ROUTER_FORWARD = "KUBE-ROUTER-FORWARD"
"""The filter chain kube-router's policy controller jumps to from FORWARD (pod traffic)."""

KUBE_ROUTER_COMPONENT = Component(
    name=KUBE_ROUTER,
    ports=("kube-router-health",),
    argv=kube_router_argv,
    health=lambda ports: Probe(f"http://{LOOPBACK}:{ports['kube-router-health']}/healthz"),
    before_start=kube_router_rbac,
    after_ready=wait_policy_engine,
    # It exits (klog.Fatal) on iptables or API errors: pods started after that would run with
    # no policy at all, so it comes back like the operator does.
    supervised=True,
)
"""The NetworkPolicy engine: iptables rules and ipsets for every pod a policy selects. After
kube-proxy (it needs the Node object, Ready, for the node's IP), before any pod of the stack."""

NODE_APISERVER_COMPONENT = replace(
    APISERVER_COMPONENT,
    health=lambda ports: Probe(
        f"https://{node.NODE_IP}:{ports['apiserver']}/readyz", client="admin"
    ),
)
NODE_MINIO_COMPONENT = replace(
    MINIO_COMPONENT,
    health=lambda ports: Probe(minio_endpoint(ports, node.NODE_IP) + objectstore.MINIO_READY_PATH),
)

NODE = (
    SCHEDULER_COMPONENT,
    REGISTRY_COMPONENT,
    PACKAGE_MIRROR_COMPONENT,
    COREDNS_COMPONENT,
    CONTAINERD_COMPONENT,
    KUBELET_COMPONENT,
    KUBE_PROXY_COMPONENT,
    KUBE_ROUTER_COMPONENT,
)
"""In start order, after the control plane: the registry before containerd (the pause image is
pushed once it is up), CoreDNS before kubelet (pods resolve through it from their first start)."""

BY_NAME = {c.name: c for c in (*CONTROL_PLANE, OPERATOR_COMPONENT, MINIO_COMPONENT)}
NODE_BY_NAME = {
    **BY_NAME,
    **{c.name: c for c in (*NODE, NODE_APISERVER_COMPONENT, NODE_MINIO_COMPONENT)},
}


def by_name(with_node: bool) -> Mapping[str, Component]:
    return NODE_BY_NAME if with_node else BY_NAME


def components(
    *, with_operator: bool, with_object_store: bool = True, with_node: bool = False
) -> tuple[Component, ...]:
    """The components of a cluster, in start order."""
    operator = (OPERATOR_COMPONENT,) if with_operator else ()
    if not with_node:
        store = (MINIO_COMPONENT,) if with_object_store else ()
        return (*CONTROL_PLANE, *operator, *store)
    store = (NODE_MINIO_COMPONENT,) if with_object_store else ()
    plane = (ETCD_COMPONENT, NODE_APISERVER_COMPONENT, CONTROLLER_MANAGER_COMPONENT)
    return (*plane, *NODE, *operator, *store)


def port_names(wanted: tuple[Component, ...]) -> list[str]:
    """Every port the components listen on, each once, in start order."""
    return list(dict.fromkeys(port for c in wanted for port in c.ports))
