"""Benchmark on the real node: from `tools/up` to a ready RayCluster, from `submit` to the job's
first log line and to its exit, and the node's memory.

    uv run python -m bench.node            # as root; needs no other node running

Cases, each in its own fresh state and cluster directories (the binaries and the images are
cached, so this is the *warm cache* figure; the cold one is the build, see tools/README.md):

- **up, fresh cluster**: `python -m tools.devcluster.stack up` from nothing to head and minimum
  workers Ready.
- **up, cluster already up**: the same command again (nothing to change).
- **submit**: `ray-platform submit` of a small directory (its zip not yet in the bucket): seconds
  to the first line the job prints, and to its exit.
- **node memory**: resident memory of the node's processes (kubelet, containerd and its shims,
  kube-proxy, CoreDNS, the registry, the package mirror) and of the pods (their cgroups).

The cluster is taken down at the end (`down`), as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.devcluster import localcluster

ROOT = Path(__file__).resolve().parents[1]
NODE_PROCESSES = (
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
    "kube-proxy",
    "coredns",
    "registry",
)


def _job(action: str, state: Path, cluster: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    argv = [sys.executable, "-m", "tools.devcluster.stack", action, "--state", str(state)]
    start = time.perf_counter()
    run = subprocess.run(
        [*argv, "--cluster-dir", str(cluster)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{action} failed:\n{run.stderr[-2000:]}")
    return took, run.stdout


def _rss_mib(names: tuple[str, ...], extra: tuple[str, ...] = ()) -> float:
    total = 0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        exe = Path(argv[0].decode(errors="replace")).name if argv and argv[0] else ""
        joined = b" ".join(argv).decode(errors="replace")
        if exe in names or any(e in joined for e in extra):
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _pods_mib() -> float:
    usage = Path("/sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes")
    if usage.is_file():
        return int(usage.read_text()) / 2**20
    current = Path("/sys/fs/cgroup/kubepods/memory.current")  # cgroup v2
    return int(current.read_text()) / 2**20 if current.is_file() else float("nan")


def _submit(cluster: Path, outputs: str, work: Path) -> tuple[float, float]:
    work.mkdir()
    (work / "job.py").write_text("print('first line', flush=True)\nimport time; time.sleep(1)\n")
    (work / "outputs.json").write_text(outputs)
    env = {**os.environ, "KUBECONFIG": str(localcluster.kubeconfig(cluster))}
    env.update(localcluster.object_store(cluster).env())
    argv = [str(ROOT / ".venv" / "bin" / "ray-platform"), "submit", "--outputs", "outputs.json"]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*argv, "--", "python", "job.py"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    first = float("nan")
    for line in proc.stdout:
        if "first line" in line and first != first:
            first = time.perf_counter() - start
    code = proc.wait()
    if code != 0:
        raise SystemExit(f"submit exited {code}")
    return first, time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        state, cluster = Path(tmp) / "state", Path(tmp) / "cluster"
        try:
            fresh, stdout = _job("up", state, cluster)
            again, _ = _job("up", state, cluster)
            lines = stdout.splitlines()
            start = max(i for i, line in enumerate(lines) if line == "{")
            outputs = json.dumps(json.loads("\n".join(lines[start:])))
            first, done = _submit(cluster, outputs, Path(tmp) / "job")
            node = _rss_mib(NODE_PROCESSES, extra=("proxpi.server",))
            pods = _pods_mib()
        finally:
            localcluster.down(cluster)
    print(f"up, fresh cluster (warm cache)   {fresh:7.1f} s")
    print(f"up, cluster already up           {again:7.1f} s")
    print(f"submit -> first log line         {first:7.1f} s")
    print(f"submit -> exit                   {done:7.1f} s")
    print(f"node processes, resident memory  {node:7.0f} MiB")
    print(f"pods (kubepods cgroup)           {pods:7.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
