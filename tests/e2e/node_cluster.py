"""A real node for the e2e tests: the main job brings it up as a user does (`tools/up`), and
what the tests use to look at it (kubectl, pods, exec, submit, port-forward) and at the machine
(everything the node may change, to compare before `up` and after `down`).

One node per machine (one bridge, kubelet's port): each test module that uses `deployed` holds
the node for its whole run, and the modules run one after another.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.mainjob import ROOT, job, ok, printed_outputs
from tools.build import ensure
from tools.devcluster import localcluster
from tools.devcluster.kube import Kube
from tools.devcluster.localcluster import node

NS = "ray"
CLUSTER = "ray"


@dataclass(frozen=True)
class Deployment:
    state: Path
    cluster: Path
    outputs: dict[str, Any]
    kube: Kube
    kubeconfig: Path
    before: dict[str, Any]
    """The machine before `up` (see `machine`)."""


# ------------------------------------------------------------------------- the machine, measured

VOLATILE_SYSCTLS = re.compile(
    r"^(kernel\.(random|ns_last_pid|pty\.nr|tainted)|fs\.(dentry|file-nr|inode)|"
    r"net\.netfilter\.nf_conntrack_count|vm\.stat|kernel\.sched_domain|fs\.quota|"
    r"net\.ipv6\.conf\.|net\.ipv4\.conf\.(veth|rpbr)|kernel\.perf_event_max)"
)


def sysctls() -> dict[str, str]:
    found = {}
    for base in ("kernel", "vm", "net/ipv4", "net/bridge", "net/netfilter", "net/core"):
        for path in Path("/proc/sys", base).rglob("*"):
            name = ".".join(path.relative_to("/proc/sys").parts)
            if VOLATILE_SYSCTLS.match(name) or not path.is_file():
                continue
            with contextlib.suppress(OSError):
                found[name] = path.read_text().strip()
    return found


def command(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _rules(saved: str) -> list[str]:
    """iptables-save without its comment lines (they carry the time) and counters."""
    return [re.sub(r"\[\d+:\d+\]", "", ln) for ln in saved.splitlines() if not ln.startswith("#")]


def _elsewhere(pid_dir: Path, root: Path | None) -> bool:
    """A process another test run started in its own temporary directory (the submit tests'
    MinIO of a concurrent fast tier): localcluster's process code starts every process in its
    state directory, so its working directory says whose it is. Ours run under `root`."""
    tmp = Path(tempfile.gettempdir()).resolve()
    try:
        cwd = (pid_dir / "cwd").resolve(strict=True)
    except OSError:
        return False
    ours = root is not None and cwd.is_relative_to(root.resolve())
    return cwd.is_relative_to(tmp) and not ours


def machine(root: Path | None = None) -> dict[str, Any]:
    """Everything the node may change, in a comparable form (`root`: where the deployment keeps
    its state, whose processes count even though it is a temporary directory)."""
    cache = str(localcluster.default_state_dir().parent)
    processes = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = entry.read_bytes().split(b"\0")
            mine = argv and argv[0].decode(errors="replace").startswith(cache)
            if mine and not _elsewhere(entry.parent, root):
                processes.append(argv[0].decode())
    mounts = sorted(
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if any(k in line for k in ("kubelet", "containerd", "netns", "ray-platform", "shm"))
    )
    return {
        "sysctls": sysctls(),
        "iptables": _rules(command("iptables-save")),
        "ip6tables": _rules(command("ip6tables-save")),
        "nft": command("nft", "list", "ruleset"),
        "ipsets": command("ipset", "list", "-n"),
        "links": sorted(Path("/sys/class/net").iterdir()),
        "netns": sorted(p.name for p in Path("/run/netns").glob("*")),
        "mounts": mounts,
        "processes": sorted(processes),
        "paths": sorted(p for p in node.HOST_PATHS if os.path.lexists(p)),
        "container_logs": sorted(
            os.listdir("/var/log/containers") if os.path.isdir("/var/log/containers") else []
        ),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")),
    }


def assert_unchanged(before: dict[str, Any], root: Path) -> None:
    """The machine as `before` found it (sysctls compared one by one, to name the changed)."""
    after = machine(root)
    for key, value in before.items():
        if key == "sysctls":
            changed = {
                k: (v, after["sysctls"].get(k))
                for k, v in value.items()
                if after["sysctls"].get(k) != v
            }
            assert changed == {}, changed
        else:
            assert after[key] == value, key


# -------------------------------------------------------------------------------- the deployment


def kubectl(d: Deployment, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    binary = ensure(["kubectl"])["kubectl"]
    return subprocess.run(
        [str(binary), f"--kubeconfig={d.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pods(d: Deployment, kind: str) -> list[dict[str, Any]]:
    selector = f"ray.io/cluster={CLUSTER},ray.io/node-type={kind}"
    return d.kube.items(f"/api/v1/namespaces/{NS}/pods?labelSelector={selector}")


def running(d: Deployment, kind: str) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in pods(d, kind)
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def head(d: Deployment) -> str:
    names = running(d, "head")
    assert names, "no running head pod"
    return names[-1]


def in_head(d: Deployment, script: str, container: str = "ray-head", timeout: float = 300) -> str:
    run = kubectl(
        d,
        "-n",
        NS,
        "exec",
        head(d),
        "-c",
        container,
        "--",
        "python",
        "-c",
        script,
        timeout=timeout,
    )
    assert run.returncode == 0, f"exit {run.returncode}: {run.stdout}\n{run.stderr}"
    return run.stdout


@contextlib.contextmanager
def deployed(root: Path, *up_args: str) -> Iterator[Deployment]:
    """`tools/up [up_args]` from nothing into `root` (state and cluster directories); `down`
    after, always. Needs root: the caller asserts it (a failure, never a skip)."""
    state, cluster = root / "state", root / "cluster"
    before = machine(root)
    try:
        run = ok(job("up", state, cluster, *up_args))
        kubeconfig = localcluster.kubeconfig(cluster)
        yield Deployment(
            state, cluster, printed_outputs(run.stdout), Kube(kubeconfig), kubeconfig, before
        )
    finally:
        localcluster.down(cluster)


@contextlib.contextmanager
def port_forward(d: Deployment, port: int, pod: str | None = None) -> Iterator[int]:
    """A kubectl port-forward to `port` of `pod` (default: the running head) on a free local
    port, once it accepts connections."""
    binary = ensure(["kubectl"])["kubectl"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(binary),
            f"--kubeconfig={d.kubeconfig}",
            "-n",
            NS,
            "port-forward",
            f"pod/{pod or head(d)}",
            f"{local}:{port}",
        ],
        # kubectl prints a line per connection: into a pipe nobody reads it would block once the
        # pipe is full (a probe a second fills it in about half an hour).
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", local), timeout=1).close()
                break
            assert time.monotonic() < deadline and proc.poll() is None, "port-forward never came up"
            time.sleep(0.5)
        yield local
    finally:
        proc.terminate()
        proc.wait(10)


def exec_in(d: Deployment, pod: str, container: str, *argv: str) -> str:
    run = kubectl(d, "-n", NS, "exec", pod, "-c", container, "--", *argv)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stdout}\n{run.stderr}"
    return run.stdout


def submit_command(d: Deployment, workdir: Path, *argv: str) -> tuple[list[str], dict[str, str]]:
    """`ray-platform submit --outputs <the stack's outputs> -- argv` and its environment, as a
    user on this machine runs it (KUBECONFIG and the bucket's credentials set)."""
    outputs = workdir.parent / f"{workdir.name}-outputs.json"
    outputs.write_text(json.dumps(d.outputs))
    env = {**os.environ, "KUBECONFIG": str(d.kubeconfig)}
    env.update(localcluster.object_store(d.cluster).env())
    command = [
        str(ROOT / ".venv" / "bin" / "ray-platform"),
        "submit",
        "--outputs",
        str(outputs),
        "--",
        *argv,
    ]
    return command, env


def submit(d: Deployment, workdir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    command, env = submit_command(d, workdir, *argv)
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900, check=False
    )
