"""A throwaway Kubernetes control plane on loopback, for the e2e tests and local development.

    python -m tools.localcluster up|down|status|kubeconfig [--dir DIR]

`up` starts etcd, kube-apiserver, kube-controller-manager and (by default) the KubeRay operator as
detached processes listening on 127.0.0.1 only, on ports chosen when it starts (so several
clusters can coexist), writes an admin kubeconfig and prints `export KUBECONFIG=...`. There is no
scheduler and no kubelet: Pods stay Pending, everything else (namespaces, Deployments and
ReplicaSets, garbage collection, service accounts, KubeRay's Pods and Services) is reconciled.
`down` stops exactly the processes `up` started and deletes the cluster's data.

The binaries come from `tools.build.ensure` (built from Go modules). Linux only: `down` and
`status` identify processes through /proc.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import yaml

from tools.build import BuildError, cache_root, ensure
from tools.certs import ADMIN_USER, CONTROLLER_MANAGER_USER, Pki, write_pki

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

# Controllers that only make sense with a cloud provider or with Nodes that have Pod CIDRs.
_DISABLED_CONTROLLERS = (
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
    "node-route-controller",
    "node-ipam-controller",
)

READY_TIMEOUT = 180.0
"""Seconds each component gets to become ready (generous: CI runners can have 2 slow cores)."""
STOP_TIMEOUT = 15.0
"""Seconds a component gets to exit after SIGTERM before it is sent SIGKILL."""
_LOG_TAIL_LINES = 20
_STATE_VERSION = 1
_RESTART_BACKOFF_MAX = 30.0
_RESTART_BACKOFF_RESET = 60.0

# Popen objects of the processes this Python process started: keeping them referenced avoids
# "subprocess is still running" ResourceWarnings and lets `down` reap them in the same process.
_children: dict[int, subprocess.Popen[bytes]] = {}


class LocalClusterError(RuntimeError):
    """The local cluster could not be started, inspected or stopped; the message is one line."""


def default_state_dir() -> Path:
    """`${RAY_PLATFORM_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ray-platform}/localcluster`."""
    return cache_root() / "localcluster"


# --------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    """Where everything lives under one state directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.root / "controller-manager.kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def _layout(state_dir: Path | None) -> _Layout:
    return _Layout((state_dir or default_state_dir()).expanduser().resolve())


@contextlib.contextmanager
def _locked(layout: _Layout) -> Iterator[None]:
    """Serialize `up` and `down` on one state directory (e.g. parallel test workers)."""
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with layout.lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class _Process:
    """A process `up` started, as recorded in state.json."""

    name: str
    pid: int
    argv: list[str]
    """The exact command line: `down` only signals the PID while /proc still shows it."""
    binaries: list[str]
    """Executables allowed in its process group (the supervisor's group holds the operator)."""


@dataclass
class _State:
    ports: dict[str, int]
    kubeconfig: str
    processes: list[_Process] = field(default_factory=list)

    def process(self, name: str) -> _Process | None:
        return next((p for p in self.processes if p.name == name), None)


def _load_state(layout: _Layout) -> _State | None:
    try:
        raw = json.loads(layout.state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LocalClusterError(f"unreadable {layout.state_file}: {err}") from err
    if raw.get("version") != _STATE_VERSION:
        raise LocalClusterError(
            f"{layout.state_file} has an unknown format; stop its processes by hand, then delete it"
        )
    return _State(
        ports={str(k): int(v) for k, v in raw["ports"].items()},
        kubeconfig=str(raw["kubeconfig"]),
        processes=[_Process(**p) for p in raw["processes"]],
    )


def _save_state(layout: _Layout, state: _State) -> None:
    data = {"version": _STATE_VERSION, **asdict(state)}
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(layout.state_file)


# ------------------------------------------------------------------------------------ processes


def _cmdline(pid: int) -> list[str] | None:
    """argv of a live process, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:  # zombies and kernel threads have an empty command line
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not linger as a zombie."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    _reap(pid)
    return _cmdline(pid) is not None


def _group_members(proc: _Process) -> list[int]:
    """PIDs that belong to `proc` and are still running.

    Each process was started as the leader of its own session and process group. The leader counts
    only while its command line is the recorded one (so a reused PID is never signalled); other
    members of the group count when their executable is one we started (the supervised operator,
    which outlives a supervisor that was SIGKILLed).
    """
    leader = _cmdline(proc.pid)
    if leader is not None and leader != proc.argv:
        return []  # the PID now belongs to something else
    members = [proc.pid] if leader is not None else []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == proc.pid:
            continue
        pid = int(entry.name)
        try:
            in_group = os.getpgid(pid) == proc.pid
        except OSError:
            continue
        argv = _cmdline(pid) if in_group else None
        if argv and argv[0] in proc.binaries:
            members.append(pid)
    return members


def _stop(proc: _Process, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process (it forwards to its children), then SIGKILL whatever is left."""
    members = _group_members(proc)
    if not members:
        return
    _progress(f"stopping {proc.name} (pid {proc.pid})")
    # Signal the leader only: the supervisor forwards SIGTERM to the operator, and a Go program
    # using controller-runtime exits abruptly on a second signal.
    first = [proc.pid] if proc.pid in members else members
    for pid in first:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in members):
            return
        time.sleep(0.1)
    survivors = [pid for pid in _group_members(proc) if _alive(pid)]
    _progress(f"{proc.name} did not exit within {timeout:.0f}s; killing {survivors}")
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in survivors):
        if time.monotonic() > deadline:
            raise LocalClusterError(f"could not stop {proc.name}: pids {survivors} survive SIGKILL")
        time.sleep(0.1)


def _spawn(
    layout: _Layout, name: str, argv: Sequence[str], extra_env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` detached (own session: it outlives the caller's shell), logging to logs/."""
    # Every component gets its cluster from flags; a KUBECONFIG of the caller must not leak in.
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(extra_env or {})
    layout.logs.mkdir(parents=True, exist_ok=True)
    with layout.log(name).open("wb") as log:
        log.write(f"# {shlex.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=layout.root,
            env=env,
            start_new_session=True,
        )
    _children[child.pid] = child
    return child


def _free_ports(names: Sequence[str]) -> dict[str, int]:
    """Distinct ports that are free on loopback now (held open together, so no duplicates)."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for name in names:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports[name] = int(sock.getsockname()[1])
        return ports


# ---------------------------------------------------------------------------------------- probes


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> int | None:
    """HTTP status of a GET, or None if nothing answered. Never uses a proxy."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ssl.SSLError):
        return None


def _tls(pki: Path, client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client is not None:
        context.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    return context


def _health_check(layout: _Layout, name: str, ports: dict[str, int]) -> Callable[[], bool]:
    """A probe that is true while component `name` reports itself healthy."""
    if name == ETCD:
        url = f"http://{LOOPBACK}:{ports['etcd-client']}/health"
        return lambda: _get(url) == 200
    if name == APISERVER:
        url = f"https://{LOOPBACK}:{ports['apiserver']}/readyz"
        admin = _tls(layout.pki, "admin")
        return lambda: _get(url, admin) == 200
    if name == CONTROLLER_MANAGER:
        url = f"https://{LOOPBACK}:{ports['controller-manager']}/healthz"
        ca = _tls(layout.pki)
        return lambda: _get(url, ca) == 200
    if name == OPERATOR:
        url = f"http://{LOOPBACK}:{ports['operator-probe']}/readyz"
        return lambda: _get(url) == 200
    raise ValueError(name)


def _api_object_exists(layout: _Layout, ports: dict[str, int], path: str) -> Callable[[], bool]:
    url = f"https://{LOOPBACK}:{ports['apiserver']}{path}"
    admin = _tls(layout.pki, "admin")
    return lambda: _get(url, admin) == 200


# ------------------------------------------------------------------------------------ kubeconfig


def _kubeconfig(server: str, ca_cert: Path, client_cert: Path, client_key: Path, user: str) -> str:
    """A self-contained kubeconfig (credentials embedded, so it can be copied or passed as text)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "localcluster",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client_cert),
                    "client-key-data": b64(client_key),
                },
            }
        ],
        "contexts": [
            {"name": "localcluster", "context": {"cluster": "localcluster", "user": user}}
        ],
        "current-context": "localcluster",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------- command lines


def _etcd_argv(binary: Path, layout: _Layout, ports: dict[str, int]) -> list[str]:
    client = f"http://{LOOPBACK}:{ports['etcd-client']}"
    peer = f"http://{LOOPBACK}:{ports['etcd-peer']}"
    return [
        str(binary),
        "--name=localcluster",
        f"--data-dir={layout.etcd_data}",
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


def _apiserver_argv(binary: Path, pki: Pki, ports: dict[str, int]) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://{LOOPBACK}:{ports['etcd-client']}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports['apiserver']}",
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
        # No --enable-admission-plugins: the defaults need neither a scheduler nor Nodes, and the
        # ServiceAccount plugin is satisfied by the controller manager's service-account controller.
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _controller_manager_argv(
    binary: Path, layout: _Layout, pki: Pki, ports: dict[str, int]
) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={layout.controller_manager_kubeconfig}",
        # No --authentication/authorization-kubeconfig: delegated authentication needs the API
        # server's request-header CA (an aggregation front proxy we do not have) and logs errors
        # without it; /healthz, the only endpoint used here, is always allowed.
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports['controller-manager']}",
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
        "--controllers=*," + ",".join(f"-{name}" for name in _DISABLED_CONTROLLERS),
        "--profiling=false",
    ]


def _operator_argv(binary: Path, layout: _Layout, ports: dict[str, int]) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig}",
        "--enable-leader-election=false",
        f"--metrics-addr={LOOPBACK}:{ports['operator-metrics']}",
        f"--health-probe-bind-address={LOOPBACK}:{ports['operator-probe']}",
        "--log-stdout-encoder=console",
        # While its CRDs are missing it logs an error every 10s per kind; without stack traces.
        "--zap-stacktrace-level=panic",
    ]


def _supervisor_argv(operator_argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "tools.localcluster", "_supervise", "--", *operator_argv]


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ComponentStatus:
    """One process of the local cluster."""

    name: str
    pid: int
    running: bool
    """The recorded PID still runs the recorded command line."""
    healthy: bool
    """Its health endpoint answers OK."""
    endpoint: str


@dataclass(frozen=True)
class ClusterStatus:
    """What `status` found in a state directory."""

    state_dir: Path
    kubeconfig: Path | None
    """None when no cluster is recorded there."""
    components: tuple[ComponentStatus, ...]

    @property
    def recorded(self) -> bool:
        """A cluster was started here and not taken down."""
        return self.kubeconfig is not None

    @property
    def healthy(self) -> bool:
        """Every recorded process runs, and the control plane reports healthy.

        The operator's probe does not count: while its CRDs are missing it exits every couple of
        minutes and its supervisor restarts it, which is expected (see `_supervise`).
        """
        return self.recorded and all(
            c.running and (c.healthy or c.name == OPERATOR) for c in self.components
        )


_ENDPOINTS = {
    ETCD: "http://{host}:{ports[etcd-client]}",
    APISERVER: "https://{host}:{ports[apiserver]}",
    CONTROLLER_MANAGER: "https://{host}:{ports[controller-manager]}",
    OPERATOR: "http://{host}:{ports[operator-probe]}",
}


def _status(layout: _Layout, state: _State | None) -> ClusterStatus:
    if state is None:
        return ClusterStatus(layout.root, None, ())
    components = []
    for proc in state.processes:
        running = _cmdline(proc.pid) == proc.argv
        try:
            healthy = running and _health_check(layout, proc.name, state.ports)()
        except (OSError, ssl.SSLError):  # credentials gone: a half torn-down cluster
            healthy = False
        endpoint = _ENDPOINTS[proc.name].format(host=LOOPBACK, ports=state.ports)
        components.append(ComponentStatus(proc.name, proc.pid, running, healthy, endpoint))
    return ClusterStatus(layout.root, Path(state.kubeconfig), tuple(components))


def status(state_dir: Path | None = None) -> ClusterStatus:
    """Inspect the cluster recorded in `state_dir` (default: `default_state_dir()`)."""
    layout = _layout(state_dir)
    return _status(layout, _load_state(layout))


def kubeconfig(state_dir: Path | None = None) -> Path:
    """Path of the admin kubeconfig of the running cluster; raises if none is recorded."""
    layout = _layout(state_dir)
    state = _load_state(layout)
    if state is None or not Path(state.kubeconfig).is_file():
        raise LocalClusterError(f"no local cluster in {layout.root}; run `up` first")
    return Path(state.kubeconfig)


# ---------------------------------------------------------------------------------------- up/down


def _progress(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Starter:
    """Starts components one by one, recording each in state.json as soon as it runs."""

    layout: _Layout
    state: _State
    timeout: float
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        binaries: list[str],
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        child = _spawn(self.layout, name, argv, extra_env)
        self.started.append((name, child))
        self.state.processes.append(_Process(name, child.pid, argv, binaries))
        _save_state(self.layout, self.state)

    def wait(self, name: str, what: str, check: Callable[[], bool]) -> None:
        """Wait until `check()` holds; fail early if any started process exits."""
        begin = time.monotonic()
        while not check():
            for started_name, child in self.started:
                code = child.poll()
                if code is not None:
                    self.fail(started_name, f"{started_name} exited with code {code}")
            if time.monotonic() - begin > self.timeout:
                self.fail(name, f"{what} not ready after {self.timeout:.0f}s")
            time.sleep(0.25)
        _progress(f"{what} ready ({time.monotonic() - begin:.1f}s)")

    def fail(self, name: str, message: str) -> None:
        log = self.layout.log(name)
        print(f"--- last {_LOG_TAIL_LINES} lines of {log} ---", file=sys.stderr)
        print(_tail(log), file=sys.stderr)
        print("---", file=sys.stderr, flush=True)
        raise LocalClusterError(f"{message}; see {log}")


def up(
    state_dir: Path | None = None,
    *,
    with_operator: bool = True,
    timeout: float = READY_TIMEOUT,
) -> Path:
    """Start a fresh local cluster (or reuse the healthy one) and return its kubeconfig path.

    Returns once /readyz is OK, the `default` namespace and its `default` ServiceAccount exist
    (so Pods can be admitted) and, with `with_operator`, the KubeRay operator answers its probe.
    """
    layout = _layout(state_dir)
    with _locked(layout):
        current = _status(layout, _load_state(layout))
        wanted = {ETCD, APISERVER, CONTROLLER_MANAGER} | ({OPERATOR} if with_operator else set())
        same = {c.name for c in current.components} == wanted
        if current.healthy and same and current.kubeconfig is not None:
            _progress(f"already up ({layout.root})")
            return current.kubeconfig
        if current.recorded:
            _progress("found a stale or different cluster; stopping it first")
        _teardown(layout)
        return _start(layout, with_operator=with_operator, timeout=timeout)


def down(state_dir: Path | None = None) -> None:
    """Stop the processes `up` recorded and delete the cluster's data (logs are kept)."""
    layout = _layout(state_dir)
    with _locked(layout):
        _teardown(layout)


def _teardown(layout: _Layout) -> None:
    state = _load_state(layout)
    if state is not None:
        for proc in reversed(state.processes):  # clients first, etcd last
            _stop(proc)
    for path in (layout.etcd_data, layout.pki):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.kubeconfig, layout.controller_manager_kubeconfig, layout.state_file):
        path.unlink(missing_ok=True)


def _start(layout: _Layout, *, with_operator: bool, timeout: float) -> Path:
    names = [ETCD, APISERVER, CONTROLLER_MANAGER] + ([OPERATOR] if with_operator else [])
    _progress("resolving binaries: " + ", ".join(names))
    try:
        binaries = ensure(names)
    except BuildError as err:
        raise LocalClusterError(f"cannot build the control plane: {err}") from err

    _progress(f"starting in {layout.root}")
    ports = _free_ports(
        ["etcd-client", "etcd-peer", "apiserver", "controller-manager"]
        + (["operator-metrics", "operator-probe"] if with_operator else [])
    )
    pki = write_pki(layout.pki, service_ip=SERVICE_IP)
    server = f"https://{LOOPBACK}:{ports['apiserver']}"
    _write_private(
        layout.kubeconfig,
        _kubeconfig(server, pki.ca_cert, pki.admin_cert, pki.admin_key, ADMIN_USER),
    )
    _write_private(
        layout.controller_manager_kubeconfig,
        _kubeconfig(
            server,
            pki.ca_cert,
            pki.controller_manager_cert,
            pki.controller_manager_key,
            CONTROLLER_MANAGER_USER,
        ),
    )
    state = _State(ports=ports, kubeconfig=str(layout.kubeconfig))
    _save_state(layout, state)
    starter = _Starter(layout, state, timeout)
    try:
        _progress(f"starting etcd on {LOOPBACK}:{ports['etcd-client']}")
        argv = _etcd_argv(binaries[ETCD], layout, ports)
        starter.start(ETCD, argv, [argv[0]])
        starter.wait(ETCD, "etcd", _health_check(layout, ETCD, ports))

        _progress(f"starting kube-apiserver on {server}")
        argv = _apiserver_argv(binaries[APISERVER], pki, ports)
        starter.start(APISERVER, argv, [argv[0]])
        starter.wait(APISERVER, "kube-apiserver", _health_check(layout, APISERVER, ports))
        starter.wait(
            APISERVER,
            "namespace default",
            _api_object_exists(layout, ports, "/api/v1/namespaces/default"),
        )

        _progress("starting kube-controller-manager")
        argv = _controller_manager_argv(binaries[CONTROLLER_MANAGER], layout, pki, ports)
        starter.start(CONTROLLER_MANAGER, argv, [argv[0]])
        starter.wait(
            CONTROLLER_MANAGER,
            "kube-controller-manager",
            _health_check(layout, CONTROLLER_MANAGER, ports),
        )
        starter.wait(
            CONTROLLER_MANAGER,
            "serviceaccount default/default",
            _api_object_exists(layout, ports, "/api/v1/namespaces/default/serviceaccounts/default"),
        )

        if with_operator:
            _progress("starting kuberay-operator (supervised: restarted whenever it exits)")
            operator = _operator_argv(binaries[OPERATOR], layout, ports)
            # The supervisor is this module: make it importable whatever the caller's cwd.
            pythonpath = [str(_repo_root()), *filter(None, [os.environ.get("PYTHONPATH")])]
            starter.start(
                OPERATOR,
                _supervisor_argv(operator),
                [sys.executable, operator[0]],
                {"PYTHONPATH": os.pathsep.join(pythonpath)},
            )
            starter.wait(OPERATOR, "kuberay-operator", _health_check(layout, OPERATOR, ports))
    except BaseException:
        _progress("start failed; stopping what was started")
        _teardown(layout)
        raise
    _progress(f"up; kubeconfig: {layout.kubeconfig}")
    return layout.kubeconfig


# ------------------------------------------------------------------------------------- supervisor


def _supervise(argv: Sequence[str]) -> int:
    """Run `argv`, restarting it with exponential backoff whenever it exits, until SIGTERM/SIGINT.

    KubeRay's operator exits when its CRDs are missing (its informers cannot sync); the Pulumi
    program under test installs the CRDs itself, so the operator must come back once they exist.
    """
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    name = Path(argv[0]).name
    delay = 1.0
    while not stopping:
        began = time.monotonic()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        code = child.wait()
        if stopping:
            break
        if time.monotonic() - began > _RESTART_BACKOFF_RESET:
            delay = 1.0
        print(
            f"[supervisor] {name} exited with code {code}; restarting in {delay:.0f}s", flush=True
        )
        resume = time.monotonic() + delay
        while not stopping and time.monotonic() < resume:
            time.sleep(0.2)
        delay = min(delay * 2, _RESTART_BACKOFF_MAX)
    print(f"[supervisor] stopped {name}", flush=True)
    return 0


# -------------------------------------------------------------------------------------------- CLI


def _print_status(st: ClusterStatus, out: IO[str]) -> None:
    if not st.recorded:
        print(f"not running (state dir {st.state_dir})", file=out)
        return
    for c in st.components:
        health = "healthy" if c.healthy else ("UNHEALTHY" if c.running else "NOT RUNNING")
        print(f"{c.name:<24} pid {c.pid:<8} {c.endpoint:<28} {health}", file=out)
    print(f"kubeconfig: {st.kubeconfig}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_supervise"]:
        rest = args_list[1:]
        return _supervise(rest[1:] if rest[:1] == ["--"] else rest)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"state directory (default: {default_state_dir()})",
    )
    parser = argparse.ArgumentParser(
        prog="python -m tools.localcluster",
        description="A throwaway Kubernetes control plane (with the KubeRay operator) on loopback.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", parents=[common], help="start (or reuse) the cluster")
    start.add_argument("--no-operator", action="store_true", help="do not run the KubeRay operator")
    start.add_argument(
        "--timeout", type=float, default=READY_TIMEOUT, help="seconds per component to get ready"
    )
    commands.add_parser("down", parents=[common], help="stop the cluster and delete its data")
    commands.add_parser(
        "status", parents=[common], help="show the processes (exit 0 healthy, 1 not, 3 not running)"
    )
    commands.add_parser("kubeconfig", parents=[common], help="print the kubeconfig path")
    args = parser.parse_args(args_list)

    try:
        if args.command == "up":
            path = up(args.dir, with_operator=not args.no_operator, timeout=args.timeout)
            print(f"export KUBECONFIG={shlex.quote(str(path))}")
        elif args.command == "down":
            down(args.dir)
            _progress("down")
        elif args.command == "status":
            st = status(args.dir)
            _print_status(st, sys.stdout)
            return 0 if st.healthy else (1 if st.recorded else 3)
        elif args.command == "kubeconfig":
            print(kubeconfig(args.dir))
    except LocalClusterError as err:
        print(f"localcluster: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
