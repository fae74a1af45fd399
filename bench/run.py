"""Benchmark: `pulumi up --stack local` (cold and no-op) against a server-side apply of the same
objects on the same local control plane. Median of several runs, and the ratio.

    uv run python -m bench.run [--runs 3]

Cold: from an empty cluster (namespace, CRDs, ServiceAccount, ConfigMap, PV, PVC, RayCluster).
No-op: the same again with nothing to change. The SSA baseline sends exactly the objects the
stack created (taken from its state), in dependency order, from one Python process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.devcluster import engine, localcluster
from tools.devcluster.kube import Kube

ORDER = [
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "RayCluster",
]


def _objects(stack: Any) -> list[dict[str, Any]]:
    """What the stack sent to the cluster, per Kubernetes object, in dependency order."""
    objs = []
    for r in stack.export_stack().deployment["resources"]:
        inputs = r.get("inputs") or {}
        if r.get("custom") and inputs.get("kind") in ORDER:
            objs.append({k: v for k, v in inputs.items() if not k.startswith("__")})
    return sorted(objs, key=lambda o: ORDER.index(o["kind"]))


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _wait_gone(kube: Kube) -> None:
    kube.wait("namespace ray to go", lambda: kube.get("/api/v1/namespaces/ray") is None, 300)
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    kube.wait(
        "the KubeRay CRDs to go",
        lambda: not [c for c in kube.items(crds) if c["spec"]["group"] == "ray.io"],
        300,
    )


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def _server_side_apply(kube: Kube, objects: list[dict[str, Any]]) -> None:
    """Apply in order; like the provider, wait for each CRD to be Established before its CRs."""
    for obj in objects:
        live = kube.apply(obj)
        if obj["kind"] == "CustomResourceDefinition" and not _established(live):
            path = (
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{obj['metadata']['name']}"
            )
            kube.wait("CRD established", lambda p=path: _established(kube.get(p) or {}), 60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ray-platform-bench-"))
    kubeconfig = localcluster.up(root / "cluster")
    try:
        kube = Kube(kubeconfig)
        eng = engine.engine(root / "state", kubeconfig)
        stack = engine.local_stack(eng, engine.work_dir(root / "state"))
        stack.up(color="never")  # warm-up: caches, first-run plugin start-up
        cold, noop = [], []
        for i in range(args.runs):
            stack.destroy(color="never")
            _wait_gone(kube)
            cold.append(_timed(lambda: stack.up(color="never")))
            noop.append(_timed(lambda: stack.up(color="never")))
            print(
                f"[bench] pulumi run {i + 1}: cold {cold[-1]:.2f}s no-op {noop[-1]:.2f}s",
                file=sys.stderr,
            )
        objects = _objects(stack)
        stack.destroy(color="never")
        _wait_gone(kube)
        ssa_cold, ssa_noop = [], []
        for i in range(args.runs):
            ssa_cold.append(_timed(lambda: _server_side_apply(kube, objects)))
            ssa_noop.append(_timed(lambda: _server_side_apply(kube, objects)))
            print(
                f"[bench] SSA run {i + 1}: cold {ssa_cold[-1]:.3f}s no-op {ssa_noop[-1]:.3f}s",
                file=sys.stderr,
            )
            for o in reversed(objects):
                kube.delete(o)
            _wait_gone(kube)
    finally:
        localcluster.down(root / "cluster")
    rows = [
        ("cold", statistics.median(cold), statistics.median(ssa_cold)),
        ("no-op", statistics.median(noop), statistics.median(ssa_noop)),
    ]
    print(f"objects: {len(objects)}; runs: {args.runs}; medians in seconds")
    print("| case | pulumi up | server-side apply | ratio |")
    print("|---|---|---|---|")
    for name, p, s in rows:
        print(f"| {name} | {p:.2f} | {s:.2f} | {p / s:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
