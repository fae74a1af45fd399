"""The one piece of process code: spawn any component detached, supervise the ones that must be
restarted, probe their health, and stop them (by recorded PID and command line, never by name).
The submit tests' standalone object stores (tools/testing/bucket_servers.py) run through it too.

Linux only: processes are identified through /proc.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from tools.devcluster.localcluster.components import LOOPBACK, Component, Context, Probe, api_probe
from tools.devcluster.localcluster.state import (
    Layout,
    LocalClusterError,
    ProcessRecord,
    State,
    save_state,
)
from tools.devcluster.objectstore import ObjectStoreError

READY_TIMEOUT = 180.0
"""Seconds each component gets to become ready (generous: CI runners can have 2 slow cores)."""
STOP_TIMEOUT = 15.0
"""Seconds a component gets to exit after SIGTERM before it is sent SIGKILL."""
LOG_TAIL_LINES = 20
RESTART_BACKOFF_MAX = 30.0
RESTART_BACKOFF_RESET = 60.0
"""A run longer than this was a healthy one: the next restart waits 1s again."""

REPO_ROOT = Path(__file__).resolve().parents[3]  # tools/devcluster/localcluster/process.py

# Popen objects of the processes this Python process started: keeping them referenced avoids
# "subprocess is still running" ResourceWarnings and lets `down` reap them in the same process.
_children: dict[int, subprocess.Popen[bytes]] = {}


def progress(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------------- identity


def cmdline(pid: int) -> list[str] | None:
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


def alive(pid: int) -> bool:
    _reap(pid)
    return cmdline(pid) is not None


def running(record: ProcessRecord) -> bool:
    """The recorded PID still runs the recorded command line (a reused PID does not count)."""
    return cmdline(record.pid) == record.argv


def group_members(record: ProcessRecord) -> list[int]:
    """PIDs that belong to `record` and are still running.

    Each process was started as the leader of its own session and process group. The leader counts
    only while its command line is the recorded one (so a reused PID is never signalled); other
    members of the group count when their executable is one we started (the supervised operator,
    which outlives a supervisor that was SIGKILLed).
    """
    leader = cmdline(record.pid)
    if leader is not None and leader != record.argv:
        return []  # the PID now belongs to something else
    members = [record.pid] if leader is not None else []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == record.pid:
            continue
        pid = int(entry.name)
        try:
            in_group = os.getpgid(pid) == record.pid
        except OSError:
            continue
        argv = cmdline(pid) if in_group else None
        if argv and argv[0] in record.binaries:
            members.append(pid)
    return members


# ----------------------------------------------------------------------------------------- stop


def stop(record: ProcessRecord, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process (it forwards to its children), then SIGKILL whatever is left after
    `timeout` seconds; `timeout=0` sends SIGKILL at once, as a crash would (the fault tests)."""
    members = group_members(record)
    if not members:
        return
    progress(f"stopping {record.name} (pid {record.pid})")
    survivors = members
    if timeout > 0:
        # Signal the leader only: the supervisor forwards SIGTERM to the operator, and a Go
        # program using controller-runtime exits abruptly on a second signal.
        first = [record.pid] if record.pid in members else members
        for pid in first:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(alive(pid) for pid in members):
                return
            time.sleep(0.1)
        survivors = [pid for pid in group_members(record) if alive(pid)]
        progress(f"{record.name} did not exit within {timeout:.0f}s; killing {survivors}")
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in survivors):
        if time.monotonic() > deadline:
            raise LocalClusterError(
                f"could not stop {record.name}: pids {survivors} survive SIGKILL"
            )
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------- spawn


def spawn(
    layout: Layout, name: str, argv: Sequence[str], extra_env: Mapping[str, str] | None = None
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


def supervisor_argv(argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` under `supervise` (see
    `python -m tools.devcluster.localcluster`)."""
    return [sys.executable, "-m", "tools.devcluster.localcluster", "_supervise", "--", *argv]


def supervise(argv: Sequence[str]) -> int:
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
        if time.monotonic() - began > RESTART_BACKOFF_RESET:
            delay = 1.0
        print(
            f"[supervisor] {name} exited with code {code}; restarting in {delay:.0f}s", flush=True
        )
        resume = time.monotonic() + delay
        while not stopping and time.monotonic() < resume:
            time.sleep(0.2)
        delay = min(delay * 2, RESTART_BACKOFF_MAX)
    print(f"[supervisor] stopped {name}", flush=True)
    return 0


def free_ports(names: Sequence[str]) -> dict[str, int]:
    """Distinct ports that are free on loopback now (held open together, so no duplicates)."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for name in names:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports[name] = int(sock.getsockname()[1])
        return ports


# --------------------------------------------------------------------------------------- probes


def http_status(
    url: str, context: ssl.SSLContext | None = None, timeout: float = 3.0
) -> int | None:
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


def checker(probe: Probe, pki_dir: Path) -> Callable[[], bool]:
    """A check that is true while `probe` answers 200 (TLS material is loaded once, here)."""
    context = None
    if probe.url.startswith("https:"):
        context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        if probe.client is not None:
            context.load_cert_chain(
                str(pki_dir / f"{probe.client}.crt"), str(pki_dir / f"{probe.client}.key")
            )
    return lambda: http_status(probe.url, context) == 200


def healthy(component: Component, ports: Mapping[str, int], pki_dir: Path) -> bool:
    """One probe of a component's health; False when its credentials are gone (half torn down)."""
    try:
        return checker(component.health(ports), pki_dir)()
    except (OSError, ssl.SSLError):
        return False


# --------------------------------------------------------------------------------------- launch


@dataclass
class Launcher:
    """Starts components one by one, recording each in state.json as soon as it runs, and waits
    until each is healthy and its ready objects exist; fails early if any started process exits.
    """

    layout: Layout
    state: State
    timeout: float = READY_TIMEOUT
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def launch(self, component: Component, ctx: Context) -> None:
        if component.before_start is not None:
            component.before_start(ctx)
        argv = component.argv(ctx)
        binaries = [argv[0]]
        env = dict(component.env(ctx))
        note = ""
        if component.supervised:
            binaries = [sys.executable, argv[0]]
            argv = supervisor_argv(argv)
            # The supervisor is this package: make it importable whatever the caller's cwd.
            pythonpath = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            env["PYTHONPATH"] = os.pathsep.join(pythonpath)
            note = " (supervised: restarted whenever it exits)"
        progress(f"starting {component.name} on {component.endpoint(ctx.ports)}{note}")
        child = spawn(self.layout, component.name, argv, env)
        self.started.append((component.name, child))
        self.state.processes.append(ProcessRecord(component.name, child.pid, argv, binaries))
        save_state(self.layout, self.state)

        self.wait(
            component.name, component.name, checker(component.health(ctx.ports), ctx.layout.pki)
        )
        for what, path in component.ready_objects:
            self.wait(
                component.name, what, checker(api_probe(ctx.ports, path, ctx.host), ctx.layout.pki)
            )
        if component.after_ready is not None:
            try:
                component.after_ready(ctx)
            except (ObjectStoreError, LocalClusterError) as err:
                self.fail(component.name, str(err))

    def wait(self, name: str, what: str, check: Callable[[], bool]) -> None:
        await_ready(self.layout, name, what, check, self.started, self.timeout)

    def fail(self, name: str, message: str) -> NoReturn:
        fail(self.layout, name, message)


def await_ready(
    layout: Layout,
    name: str,
    what: str,
    check: Callable[[], bool],
    started: Sequence[tuple[str, subprocess.Popen[bytes]]],
    timeout: float = READY_TIMEOUT,
) -> None:
    """Wait until `check()` holds; fail early (with its log's tail) if any of `started` exits."""
    begin = time.monotonic()
    while not check():
        for started_name, child in started:
            code = child.poll()
            if code is not None:
                fail(layout, started_name, f"{started_name} exited with code {code}")
        if time.monotonic() - begin > timeout:
            fail(layout, name, f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.25)
    progress(f"{what} ready ({time.monotonic() - begin:.1f}s)")


def fail(layout: Layout, name: str, message: str) -> NoReturn:
    """Raise LocalClusterError for `name`, printing the tail of its log first."""
    log = layout.log(name)
    print(f"--- last {LOG_TAIL_LINES} lines of {log} ---", file=sys.stderr)
    print(tail(log), file=sys.stderr)
    print("---", file=sys.stderr, flush=True)
    raise LocalClusterError(f"{message}; see {log}")
