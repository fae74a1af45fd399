"""One real Kubernetes node on this machine: the host side of it (root only).

The control plane alone (`components.CONTROL_PLANE`) runs anywhere without root. A node needs
the host: a bridge for the pod network, a few sysctls, iptables rules (kubelet's and
kube-proxy's, and our fence), cgroups, mounts and network namespaces. This module owns all of
that, in two halves:

- pure renderers (containerd's config, the CNI network, kubelet's configuration, CoreDNS's
  Corefile, the registry's config, the pods' resolv.conf), unit-tested without root;
- `prepare_host` / `restore_host`, which change the machine and record, before changing
  anything, what was there (`host.json` in the state directory), so that `down` puts back
  exactly that: sysctls to their old values, paths that did not exist removed, iptables chains
  and nftables tables that did not exist deleted, the bridge gone.

The pod network is one Linux bridge (`BRIDGE`) holding `NODE_IP`, which is also the node's IP
(kubelet refuses a loopback node IP), the API server's address (so the `kubernetes` Service has
an endpoint pods can reach) and where the host services pods use listen (CoreDNS, MinIO, the
package mirror). Pod traffic never leaves the machine: there is no masquerade, forwarding is
enabled on the bridge only, and `FENCE_CHAIN` drops anything forwarded between the bridge and any
other interface.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tools.devcluster.localcluster.state import Layout, LocalClusterError

BRIDGE = "rpbr0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
"""The bridge's address: node IP, API server address, cluster DNS, host services for pods."""
NODE_NAME = "ray-platform-node"
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
DNS_PORT = 53
FENCE_CHAIN = "RAY-PLATFORM-FENCE"
"""mangle FORWARD: pod traffic stays on the bridge (kube-proxy prepends its own rules to filter
FORWARD, so a fence there would come after them; it never writes to mangle FORWARD)."""
INGRESS_CHAIN = "RAY-PLATFORM-INGRESS"
"""raw PREROUTING: nothing from another interface reaches the pod or Service networks, nor the
bridge's address (the API server, kubelet, MinIO, the mirror and CoreDNS listen there)."""
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
MIRRORED_REGISTRIES = ("docker.io", "registry.k8s.io")
"""Registries containerd resolves through the local registry only (never the internet)."""

SYSCTLS = (
    # kubelet sets these when it starts (protectKernelDefaults: false).
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    # The CNI bridge plugin (isGateway) turns IPv4 forwarding on for the whole host; the fence
    # keeps pod traffic on the bridge while it is on, `down` puts the old values back.
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    # kube-proxy (iptables mode) and the pod network.
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
"""Every sysctl something on the node may change: recorded at `up`, put back at `down`."""

HOST_PATHS = (
    # Paths the runtime and kubelet use whatever their configured roots are: containerd's shim
    # sockets and runc state, the CRI's network namespaces, libcni's cache, kubelet's
    # device-plugin and pod-resources sockets.
    "/run/containerd",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/etc/cni",
    "/opt/cni",
    "/var/log/containers",
    "/var/log/pods",
)
"""Removed by `down` when they did not exist before `up`."""

IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")
OWN_CHAIN_PREFIXES = ("KUBE-", FENCE_CHAIN, INGRESS_CHAIN)
"""(The bridge plugin without ipMasq creates no CNI-* chains: those would be someone else's.)"""
"""Chains the node creates (kubelet, kube-proxy, CNI plugins, our fence)."""

OWN_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "TMP-")
"""IP sets of kube-router's policy controller (its sets, and the temporary ones it swaps in);
only new ones with these names are destroyed, even from a host record that lists none (not
every KUBE-*: kube-proxy in IPVS mode names its sets KUBE-CLUSTER-IP and so on)."""

REQUIRED_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "nft": "nftables",
    "runc": "runc",
    "mount": "mount",
    "nsenter": "util-linux",
    "conntrack": "conntrack",
    "ipset": "ipset",
}
CNI_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}
"""What the node cannot do without (checked from /proc/self/status before anything changes)."""


class NodeUnavailable(LocalClusterError):
    """This machine or user cannot run the node; the message says what is missing, in one line."""


# ------------------------------------------------------------------------------------ checking


def cni_bin_dir() -> Path:
    for candidate in CNI_PLUGIN_DIRS:
        if all((Path(candidate) / p).is_file() for p in CNI_PLUGINS):
            return Path(candidate)
    raise NodeUnavailable(
        "the CNI plugins (bridge, host-local, loopback) are missing: "
        "apt-get install containernetworking-plugins"
    )


def missing_capabilities(status_text: str) -> list[str]:
    """Names of `CAPABILITIES` absent from the effective set in a /proc/<pid>/status text."""
    effective = 0
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
    return [name for name, bit in CAPABILITIES.items() if not effective >> bit & 1]


def check_host() -> Path:
    """Raise NodeUnavailable naming what is missing; returns the CNI plugin directory."""
    if os.geteuid() != 0:
        raise NodeUnavailable(
            "the node needs root (kubelet, containerd, a bridge, iptables); run as root, or "
            "`tools/up --control-plane-only` for the API server alone (pods stay Pending)"
        )
    missing = missing_capabilities(Path("/proc/self/status").read_text())
    if missing:
        raise NodeUnavailable(
            f"the node needs the capabilities {', '.join(missing)}, which this process lacks; "
            "use `tools/up --control-plane-only` here"
        )
    absent = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if absent:
        raise NodeUnavailable(f"the node needs Debian packages: apt-get install {' '.join(absent)}")
    if not Path("/proc/sys/net/bridge").is_dir():
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
    if not Path("/proc/sys/net/bridge").is_dir():
        raise NodeUnavailable(
            "the kernel has no bridge netfilter for the pod network: `modprobe br_netfilter` "
            "(or a kernel with CONFIG_BRIDGE_NETFILTER)"
        )
    for controller in ("cpu", "memory", "pids"):
        if not _cgroup_available(controller):
            raise NodeUnavailable(f"the cgroup controller {controller!r} is not mounted")
    return cni_bin_dir()


def other_kubernetes() -> str | None:
    """What shows that another kubelet / CRI runtime uses this machine (None: nothing). Checked
    when no node of ours runs: kubelet empties the fixed device-plugin directory at start, and
    kube-proxy would rewrite another node's KUBE-* chains."""
    for path in (
        "/run/containerd/runc/k8s.io",
        "/var/lib/kubelet/device-plugins/kubelet.sock",
        "/sys/fs/cgroup/kubepods",
    ):
        if os.path.lexists(path):
            return f"{path} exists"
    found = kubepods_cgroups()
    if found:
        return f"{found[0]} exists"
    for table in ("filter", "nat"):
        if any(c.startswith("KUBE-") for c in chains("iptables", table)):
            return f"iptables {table} has KUBE-* chains"
    return None


def kubepods_cgroups() -> list[str]:
    """kubelet's cgroup trees, in each cgroup v1 hierarchy (v2's is checked as a path)."""
    return sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods"))


def _cgroup_available(controller: str) -> bool:
    if Path("/sys/fs/cgroup/cgroup.controllers").is_file():  # cgroup v2
        return controller in Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    return Path("/sys/fs/cgroup", controller).is_dir()


# ------------------------------------------------------------------------------------ renderers


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its files under the cluster's state directory."""

    root: Path

    @classmethod
    def of(cls, where: Layout) -> NodePaths:
        return cls(where.root / "node")

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def registry_hosts(self) -> Path:
        """containerd's `config_path`: one `<registry>/hosts.toml` per mirrored registry."""
        return self.root / "containerd" / "certs.d"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    @property
    def host_record(self) -> Path:
        return self.root / "host.json"


def containerd_config(
    paths: NodePaths, *, runc: str, cni_bin: Path, metrics_port: int, cgroupfs: bool
) -> str:
    """containerd 2.x (config version 3) for one kubelet: its own root, state and socket, runc
    from the host, the CNI network below, images through the local registry only."""
    q = json.dumps  # TOML basic strings are JSON strings
    return f"""version = 3
root = {q(str(paths.containerd_root))}
state = {q(str(paths.containerd_state))}
# Nothing from the host's /etc/containerd; no plugin that writes outside root and state
# (/opt/containerd, NRI's socket under /var/run/nri).
imports = []
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.image-verifier.v1.bindir",
]

[plugins."io.containerd.server.v1.grpc"]
  address = {q(str(paths.containerd_socket))}

[plugins."io.containerd.server.v1.ttrpc"]
  address = {q(str(paths.containerd_socket) + ".ttrpc")}

[plugins."io.containerd.server.v1.metrics"]
  # Its health probe (there is no HTTP health endpoint on the gRPC socket).
  address = "127.0.0.1:{metrics_port}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = {q(PAUSE_IMAGE)}
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = {q(str(paths.registry_hosts))}

[plugins."io.containerd.cri.v1.runtime"]
  # runc cannot lower oom_score_adj without CAP_SYS_RESOURCE (missing in some VMs and in
  # rootless or nested setups): without this every sandbox fails to start.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  # containerd would load its AppArmor profile into the kernel, which `down` cannot take back;
  # Pod Security `restricted` does not ask for AppArmor (RuntimeDefault seccomp is kept).
  disable_apparmor = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = {q(runc)}
        # runc's state in the node's directory, never /run/containerd/runc/k8s.io, which
        # another containerd (kubeadm, k3s) on the same machine uses for its pods.
        Root = {q(str(paths.runc_root))}
        SystemdCgroup = {str(not cgroupfs).lower()}
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [{q(str(cni_bin))}]
    conf_dir = {q(str(paths.cni_conf))}
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
"""


def registry_hosts_toml(registry: str) -> str:
    """A mirrored registry resolves through the local registry and nothing else: `server` is the
    local registry too, so a miss fails instead of going to the internet."""
    return (
        f'server = "http://{registry}"\n\n'
        f'[host."http://{registry}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  skip_verify = true\n"
    )


def registry_hosts_files(hosts_dir: Path, registry: str) -> dict[Path, str]:
    """containerd's hosts.toml per registry name: the mirrored ones, and the local registry under
    its own address too (plain HTTP): a prod stack's images are named by it
    (`<address>/ray-platform/app:…@sha256:…`), which containerd would otherwise try over HTTPS."""
    return {
        hosts_dir / name / "hosts.toml": registry_hosts_toml(registry)
        for name in (*MIRRORED_REGISTRIES, registry)
    }


def cni_conflist(paths: NodePaths) -> str:
    """One bridge network; the gateway is the bridge's address; no masquerade (nothing leaves)."""
    network = {
        "cniVersion": "1.0.0",
        "name": "ray-platform",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                # A pod reaching itself through a Service comes back through the same port.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam),
                },
            }
        ],
    }
    return json.dumps(network, indent=2) + "\n"


def resolv_conf() -> str:
    """kubelet's resolvConf: no host nameserver (the host's may be off the machine)."""
    return f"nameserver {NODE_IP}\n"


def kubelet_config(
    paths: NodePaths, *, client_ca: Path, serving_cert: Path, serving_key: Path, cgroupfs: bool
) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs" if cgroupfs else "systemd",
        # cgroup v1 is deprecated in 1.35; this machine has nothing else.
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(paths.resolv_conf),
        # Not /var/log/pods (kubelet still links /var/log/containers: `down` removes it).
        "podLogsDir": str(paths.pod_logs),
        "staticPodPath": "",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "serializeImagePulls": False,
        # A developer's disk is shared with everything else on it: evict on real exhaustion only.
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "imageGCHighThresholdPercent": 98,
        "imageGCLowThresholdPercent": 95,
        "protectKernelDefaults": False,
        "maxPods": 30,
    }
    return yaml.safe_dump(config, sort_keys=False)


def corefile(kubeconfig: Path, *, health_port: int, ready_port: int) -> str:
    """CoreDNS on the bridge address, cluster names only: no upstream forwarding (pods here have
    no route out, and the host's resolver may be off the machine)."""
    return f""".:{DNS_PORT} {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loadbalance
}}
"""


def registry_config(storage: Path, port: int) -> str:
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    return yaml.safe_dump(config, sort_keys=False)


# ---------------------------------------------------------------------------- host: the record


@dataclass
class HostRecord:
    """What was on the machine before `prepare_host` changed it (host.json)."""

    sysctls: dict[str, str] = field(default_factory=dict)
    absent_paths: list[str] = field(default_factory=list)
    chains: dict[str, list[str]] = field(default_factory=dict)
    """`<iptables>/<table>` → chains that existed before."""
    nft_tables: list[str] = field(default_factory=list)
    ipsets: list[str] = field(default_factory=list)
    """IP sets that existed before (kube-router makes one per policy and pod selector)."""
    bridge_created: bool = False


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LocalClusterError(
            f"`{' '.join(argv)}` failed: {detail[-1] if detail else result.returncode}"
        )
    return result


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys", *name.split("."))


def read_sysctls(names: Iterable[str]) -> dict[str, str]:
    found = {}
    for name in names:
        with contextlib.suppress(OSError):
            found[name] = _sysctl_path(name).read_text().strip()
    return found


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        _sysctl_path(name).write_text(value + "\n")


def chains(tool: str, table: str) -> list[str]:
    result = _run([tool, "-w", "5", "-t", table, "-S"], check=False)
    if result.returncode != 0:
        return []
    return [ln.split()[1] for ln in result.stdout.splitlines() if ln.startswith(("-N ", "-P "))]


def ipsets() -> list[str]:
    return sorted(_run(["ipset", "list", "-n"], check=False).stdout.split())


def nft_tables() -> list[str]:
    result = _run(["nft", "list", "tables"], check=False)
    return sorted(ln.strip() for ln in result.stdout.splitlines() if ln.startswith("table "))


def _save_record(paths: NodePaths, record: HostRecord) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.host_record.write_text(json.dumps(asdict(record), indent=2) + "\n")


def load_record(paths: NodePaths) -> HostRecord | None:
    try:
        raw = json.loads(paths.host_record.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LocalClusterError(f"unreadable {paths.host_record}: {err}") from err
    return HostRecord(**raw)


def bridge_exists() -> bool:
    return Path("/sys/class/net", BRIDGE).exists()


# ------------------------------------------------------------------------------ host: prepare


def prepare_host(paths: NodePaths, service_cidr: str, closed_ports: Sequence[int] = ()) -> None:
    """Record what is there, then: the bridge with NODE_IP, forwarding on it only, the fence
    (with `closed_ports`: TCP ports of node processes that listen on every address, closed to
    other interfaces)."""
    if paths.host_record.exists():
        raise LocalClusterError(
            f"{paths.host_record} exists: a node was not taken down; run `tools/up down` first"
        )
    if bridge_exists():
        raise LocalClusterError(
            f"the network interface {BRIDGE} exists already (another local node on this machine?)"
        )
    record = HostRecord(
        sysctls=read_sysctls(SYSCTLS),
        absent_paths=[p for p in HOST_PATHS if not os.path.lexists(p)],
        chains={f"{t}/{tb}": chains(t, tb) for t in IPTABLES for tb in TABLES},
        nft_tables=nft_tables(),
        ipsets=ipsets(),
    )
    _save_record(paths, record)  # before any change: `down` can undo a half-done `up`
    _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    record.bridge_created = True
    _save_record(paths, record)
    # IPv4 only: no link-local IPv6 path between pods and the host's [::] services.
    write_sysctl(f"net.ipv6.conf.{BRIDGE}.disable_ipv6", "1")
    _run(["ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    # Service traffic between pods is routed by the host: forwarding on the bridge (the CNI
    # plugin turns it on host-wide anyway; the fence below keeps it to the bridge).
    write_sysctl(f"net.ipv4.conf.{BRIDGE}.forwarding", "1")
    # Bridged pod-to-pod packets must pass iptables, or replies to a Service's DNATed
    # connection bypass conntrack.
    write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
    _install_fence(
        service_cidr,
        closed_ports,
        forwarding_was_off=record.sysctls.get("net.ipv4.ip_forward") == "0",
    )
    for directory in (paths.cni_conf, paths.cni_ipam, paths.kubelet_root, paths.registry_hosts):
        directory.mkdir(parents=True, exist_ok=True)


def fence_rules(*, forwarding_was_off: bool) -> list[list[str]]:
    """mangle FORWARD: between pods on the bridge, nothing else to or from it; and when the
    host forwarded nothing before the node (the CNI plugin turns ip_forward on host-wide),
    it forwards nothing else now either."""
    rules = [
        ["-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"],
        ["-i", BRIDGE, "-j", "DROP"],
        ["-o", BRIDGE, "-j", "DROP"],
    ]
    # Routed packets only: frames bridged within another bridge (a VM's br0) pass iptables too
    # (bridge-nf-call-iptables is host-wide) and are no forwarding of ours to stop.
    routed_only = ["-m", "physdev", "!", "--physdev-is-bridged", "-j", "DROP"]
    return rules + ([routed_only] if forwarding_was_off else [])


def ingress_rules(service_cidr: str, closed_ports: Sequence[int] = ()) -> list[list[str]]:
    """raw PREROUTING: packets from other interfaces to the pod network (and the bridge's own
    address), the Service range or `closed_ports` (on any address) are dropped before routing
    or conntrack see them."""
    return [
        ["-i", BRIDGE, "-j", "RETURN"],
        ["-i", "lo", "-j", "RETURN"],
        ["-d", POD_CIDR, "-j", "DROP"],
        ["-d", service_cidr, "-j", "DROP"],
        *(["-p", "tcp", "--dport", str(port), "-j", "DROP"] for port in closed_ports),
    ]


def ingress6_rules(closed_ports: Sequence[int]) -> list[list[str]]:
    """raw PREROUTING for IPv6: the bridge has no IPv6, so only the ports of node processes that
    listen on every address (`[::]` as well) need closing to other interfaces."""
    return [
        ["-i", "lo", "-j", "RETURN"],
        *(["-p", "tcp", "--dport", str(port), "-j", "DROP"] for port in closed_ports),
    ]


def _install_fence(
    service_cidr: str, closed_ports: Sequence[int], *, forwarding_was_off: bool
) -> None:
    chains_: list[tuple[str, str, str, str, list[list[str]]]] = [
        (
            "iptables",
            "mangle",
            "FORWARD",
            FENCE_CHAIN,
            fence_rules(forwarding_was_off=forwarding_was_off),
        ),
        ("iptables", "raw", "PREROUTING", INGRESS_CHAIN, ingress_rules(service_cidr, closed_ports)),
    ]
    if closed_ports:
        chains_.append(
            ("ip6tables", "raw", "PREROUTING", INGRESS_CHAIN, ingress6_rules(closed_ports))
        )
    for tool, table, hook, chain, rules in chains_:
        _run([tool, "-w", "5", "-t", table, "-N", chain])
        for rule in rules:
            _run([tool, "-w", "5", "-t", table, "-A", chain, *rule])
        _run([tool, "-w", "5", "-t", table, "-I", hook, "1", "-j", chain])


# ------------------------------------------------------------------------------ host: restore


def stop_containers(paths: NodePaths) -> None:
    """Kill what the node ran: the containers (runc) and containerd's shims, which outlive
    containerd and kubelet by design."""
    runc_root = paths.runc_root / "k8s.io"
    if runc_root.is_dir() and shutil.which("runc"):
        listed = _run(["runc", "--root", str(runc_root), "list", "-q"], check=False)
        for cid in listed.stdout.split():
            _run(["runc", "--root", str(runc_root), "kill", "--all", cid, "KILL"], check=False)
        time.sleep(0.5)
        for cid in listed.stdout.split():
            _run(["runc", "--root", str(runc_root), "delete", "--force", cid], check=False)
    _kill_shims(paths)


def _kill_shims(paths: NodePaths) -> None:
    needle = str(paths.containerd_socket)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"containerd-shim-runc-v2")
            and needle.encode() in b" ".join(argv)
        ):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), 9)


def _mounts_under(prefixes: Sequence[str]) -> list[str]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if any(target == p or target.startswith(p.rstrip("/") + "/") for p in prefixes):
            found.append(target)
    return sorted(set(found), key=len, reverse=True)  # deepest first


def unmount_all(prefixes: Sequence[str]) -> None:
    for _ in range(3):
        targets = _mounts_under(prefixes)
        if not targets:
            return
        for target in targets:
            _run(["umount", "-l", target], check=False)


def remove_chains(record: HostRecord) -> None:
    """Delete the rules jumping to chains the node created, then those chains."""
    for tool in IPTABLES:
        for table in TABLES:
            before = set(record.chains.get(f"{tool}/{table}", []))
            current = chains(tool, table)
            ours = [c for c in current if c not in before and c.startswith(OWN_CHAIN_PREFIXES)]
            if not ours:
                continue
            listed = _run([tool, "-w", "5", "-t", table, "-S"], check=False).stdout.splitlines()
            for line in listed:
                parts = shlex.split(line)  # comments are quoted: --comment "kubernetes ..."
                if parts[:1] == ["-A"] and parts[1] not in ours and _jumps_to(parts, ours):
                    _run([tool, "-w", "5", "-t", table, "-D", *parts[1:]], check=False)
            for chain in ours:
                _run([tool, "-w", "5", "-t", table, "-F", chain], check=False)
            for chain in ours:
                _run([tool, "-w", "5", "-t", table, "-X", chain], check=False)


def hooked(chain: str, table: str = "filter", hook: str = "FORWARD") -> bool:
    """Whether a rule of `hook` jumps to `chain` (e.g. kube-router's policy chain installed)."""
    listed = _run(["iptables", "-w", "5", "-t", table, "-S", hook], check=False).stdout
    return any(_jumps_to(shlex.split(line), [chain]) for line in listed.splitlines())


def _jumps_to(rule: list[str], targets: Sequence[str]) -> bool:
    for flag in ("-j", "-g"):
        if flag in rule:
            i = rule.index(flag)
            if i + 1 < len(rule) and rule[i + 1] in targets:
                return True
    return False


def remove_new_ipsets(record: HostRecord) -> None:
    """IP sets the node's policy engine made (after the rules that match them are gone: a set
    still referenced cannot be destroyed)."""
    for name in ipsets():
        if name not in record.ipsets and name.startswith(OWN_IPSET_PREFIXES):
            _run(["ipset", "destroy", name], check=False)


def remove_new_nft_tables(record: HostRecord) -> None:
    """Tables iptables-nft created for the node's rules, once they hold no rule of anyone's."""
    for table in nft_tables():
        if table in record.nft_tables:
            continue
        family, name = table.split()[1:3]
        listed = _run(["nft", "-a", "list", "table", family, name], check=False).stdout
        if any(
            " # handle " in ln and not ln.strip().startswith(("chain", "table"))
            for ln in listed.splitlines()
        ):
            continue  # someone else's rules live there now
        _run(["nft", "delete", "table", family, name], check=False)


def remove_cgroups() -> None:
    """kubelet's cgroup trees (kubepods) in every hierarchy, deepest first."""
    base = Path("/sys/fs/cgroup")
    roots = [p / "kubepods" for p in base.iterdir() if (p / "kubepods").is_dir()]
    if (base / "kubepods").is_dir():
        roots.append(base / "kubepods")
    for root in roots:
        for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def restore_host(paths: NodePaths) -> None:
    """Undo `prepare_host` and whatever the node did on top of it. Safe to run twice, and after
    an `up` that stopped half-way."""
    record = load_record(paths)
    if record is None:
        return
    stop_containers(paths)
    # Our mounts (rootfs, volumes, network namespaces) are all under the node's directory, and
    # under kubelet's paths only when they did not exist before: nothing else is touched.
    unmount_all([str(paths.root), *record.absent_paths])
    # Forwarding back off (if it was) before the fence goes: never a moment of open forwarding.
    for name, value in record.sysctls.items():
        write_sysctl(name, value)
    remove_chains(record)
    remove_new_ipsets(record)
    remove_new_nft_tables(record)
    if record.bridge_created and bridge_exists():
        _run(["ip", "link", "delete", BRIDGE], check=False)
    remove_cgroups()
    _remove_links_into(Path("/var/log/containers"), paths.root)
    for name, value in record.sysctls.items():
        write_sysctl(name, value)
    for path in record.absent_paths:
        if os.path.lexists(path):
            unmount_all([path])
            _remove_unmounted(Path(path))
    unmount_all([str(paths.root)])
    _remove_unmounted(paths.root, keep=paths.host_record)
    paths.host_record.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        paths.root.rmdir()


def _remove_links_into(directory: Path, root: Path) -> None:
    """kubelet links every container's log into /var/log/containers (a fixed path) even when
    its pod logs live elsewhere: remove the links into the node's directory, nothing else."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_symlink() and os.readlink(entry).startswith(str(root) + "/"):
            entry.unlink(missing_ok=True)


def _remove_unmounted(path: Path, keep: Path | None = None) -> None:
    """Delete `path` unless something is still mounted under it (then deleting would reach into
    another file system: say so instead)."""
    left = _mounts_under([str(path)])
    if left:
        raise LocalClusterError(f"cannot remove {path}: still mounted: {', '.join(left[:3])}")
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    for child in path.iterdir():
        if child != keep:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    if keep is None:
        with contextlib.suppress(OSError):
            path.rmdir()


def changed_sysctls(record: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """`name → (recorded, now)` for every recorded sysctl that differs now (for tests)."""
    now = read_sysctls(record)
    return {k: (v, now.get(k, "")) for k, v in record.items() if now.get(k) != v}
