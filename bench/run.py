"""Benchmark: `pulumi up --stack local` (cold and no-op) and `pulumi preview` of the unchanged
stack against a server-side apply of the same objects on the same local control plane. Median of
several runs, and the ratio.

    uv run python -m bench.run [--runs 3]

Cold: from an empty cluster (namespaces, CRDs, ServiceAccounts, Secret, ConfigMap, PV, PVC, Job,
NetworkPolicy, RayCluster). No-op: the same again with nothing to change. Preview: `preview` of
the unchanged stack, against a dry-run server-side apply of every object (`dryRun=All`). The SSA
baseline sends exactly the objects the stack created (taken from its state, secrets in plain
text, the CRDs from the chart of their Helm release), in dependency order, from one Python
process, and waits for what the provider waits for (each CRD Established, the PV Available, the
PVC Bound).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tools.devcluster import engine, localcluster
from tools.devcluster.kube import Kube, object_path

ORDER = [
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Job",
    "NetworkPolicy",
    "RayCluster",
]
SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""The key that marks a secret value in a Pulumi checkpoint."""


def _plain(value: Any) -> Any:
    """A checkpoint value with its secrets (exported with --show-secrets) in plain text."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return _plain(json.loads(value["plaintext"]))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _objects(eng: engine.Engine, work_dir: Path) -> list[dict[str, Any]]:
    """What the stack sent to the cluster, per Kubernetes object, in dependency order."""
    exported = subprocess.run(
        ["pulumi", "stack", "export", "--show-secrets", "--stack", "local"],
        cwd=work_dir,
        env=eng.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objs = []
    for r in json.loads(exported)["deployment"]["resources"]:
        inputs = _plain(r.get("inputs") or {})
        if r.get("custom") and inputs.get("kind") in ORDER:
            objs.append({k: v for k, v in inputs.items() if not k.startswith("__")})
        if r["type"] == "kubernetes:helm.sh/v3:Release" and inputs.get("name") == "kuberay-crds":
            # The CRDs' release: the objects are its chart's templates (the CRDs, verbatim).
            templates = sorted((work_dir / inputs["chart"] / "templates").glob("*.yaml"))
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 4 MB: libyaml's parser
            objs.extend(yaml.load(path.read_text(), Loader=loader) for path in templates)
    return sorted(objs, key=lambda o: ORDER.index(o["kind"]))


def _timed(fn: Any, changes: Any = None) -> float:
    """Seconds `fn` took; with `changes` (the result → its change summary), also insist that it
    changed nothing: a no-op that changes something is not the no-op being measured."""
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    if changes is not None and engine.summary_changes(changes(result)):
        raise RuntimeError(f"expected no changes, got {engine.summary_changes(changes(result))}")
    return seconds


def _wait_gone(kube: Kube, objects: Sequence[dict[str, Any]] = ()) -> None:
    kube.wait("namespace ray to go", lambda: kube.get("/api/v1/namespaces/ray") is None, 300)
    for obj in objects:
        kube.wait(f"{obj['kind']} to go", lambda o=obj: kube.get(object_path(o)) is None, 300)
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    kube.wait(
        "the KubeRay CRDs to go",
        lambda: not [c for c in kube.items(crds) if c["spec"]["group"] == "ray.io"],
        300,
    )


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def _available(pv: dict[str, Any]) -> bool:
    return (pv.get("status") or {}).get("phase") in ("Available", "Bound")


def _bound(pvc: dict[str, Any]) -> bool:
    return bool((pvc.get("status") or {}).get("phase") == "Bound")


def _server_side_apply(
    kube: Kube, objects: list[dict[str, Any]], *, dry_run: bool = False
) -> dict[str, float]:
    """Apply in dependency order and wait for what the provider waits for: every CRD
    Established before the first custom resource, the PV Available before its claim is applied
    (the provider's PV await, which orders them the same way), the PVC Bound (waited for last,
    so the binding overlaps the other applies, as the engine's parallel steps overlap it).
    `dry_run`: validate every object, store nothing (the analog of a preview). Returns seconds
    per kind, and per wait."""
    spent: dict[str, float] = {}

    def timed(key: str, fn: Any) -> Any:
        start = time.perf_counter()
        value = fn()
        spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
        return value

    def wait_ready(kind: str, check: Any) -> None:
        for obj in objects:
            path = object_path(obj)
            if obj["kind"] == kind and not check(kube.get(path) or {}):
                kube.wait(f"{kind} ready", lambda p=path: check(kube.get(p) or {}), 120)

    builtin = {"v1", "batch/v1", "networking.k8s.io/v1", "apiextensions.k8s.io/v1"}
    crds_ready = dry_run
    for obj in objects:
        if not crds_ready and obj["apiVersion"] not in builtin:
            timed(
                "wait: CRDs Established",
                lambda: wait_ready("CustomResourceDefinition", _established),
            )
            crds_ready = True
        if obj["kind"] == "PersistentVolumeClaim" and not dry_run:
            timed("wait: PV Available", lambda: wait_ready("PersistentVolume", _available))
        timed(obj["kind"], lambda o=obj: kube.apply(o, dry_run=dry_run))
    if not dry_run:
        timed("wait: PVC Bound", lambda: wait_ready("PersistentVolumeClaim", _bound))
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ray-platform-bench-"))
    kubeconfig = localcluster.up(root / "cluster")
    try:
        kube = Kube(kubeconfig)
        eng = engine.engine(root / "state", kubeconfig)
        wd = engine.work_dir(root / "state")
        stack = engine.local_stack(eng, wd)
        stack.up(color="never")  # warm-up: caches, first-run plugin start-up
        objects = _objects(eng, wd)
        cold, noop, preview = [], [], []
        for i in range(args.runs):
            stack.destroy(color="never")
            _wait_gone(kube, objects)
            cold.append(_timed(lambda: stack.up(color="never")))
            noop.append(
                _timed(lambda: stack.up(color="never"), lambda r: r.summary.resource_changes)
            )
            preview.append(_timed(lambda: stack.preview(color="never"), lambda r: r.change_summary))
            print(
                f"[bench] pulumi run {i + 1}: cold {cold[-1]:.2f}s no-op {noop[-1]:.2f}s "
                f"preview {preview[-1]:.2f}s",
                file=sys.stderr,
            )
        stack.destroy(color="never")
        _wait_gone(kube, objects)
        ssa_cold, ssa_noop, ssa_dry = [], [], []
        for i in range(args.runs):
            parts = {}
            for case, runs, dry in (
                ("cold", ssa_cold, False),
                ("no-op", ssa_noop, False),
                ("dry-run", ssa_dry, True),
            ):
                start = time.perf_counter()
                parts[case] = _server_side_apply(kube, objects, dry_run=dry)
                runs.append(time.perf_counter() - start)
            print(
                f"[bench] SSA run {i + 1}: cold {ssa_cold[-1]:.3f}s no-op {ssa_noop[-1]:.3f}s "
                f"dry-run {ssa_dry[-1]:.3f}s",
                file=sys.stderr,
            )
            for case, spent in parts.items():
                detail = ", ".join(f"{k} {v:.2f}" for k, v in spent.items())
                print(f"[bench]   SSA {case}: {detail}", file=sys.stderr)
            for o in reversed(objects):
                kube.delete(o)
            _wait_gone(kube, objects)
    finally:
        localcluster.down(root / "cluster")
    rows = [
        ("cold", "up", statistics.median(cold), statistics.median(ssa_cold)),
        ("no-op", "up", statistics.median(noop), statistics.median(ssa_noop)),
        ("unchanged", "preview", statistics.median(preview), statistics.median(ssa_dry)),
    ]
    print(f"objects: {len(objects)}; runs: {args.runs}; medians in seconds")
    print("| case | pulumi | seconds | server-side apply | seconds | ratio |")
    print("|---|---|---|---|---|---|")
    for name, cmd, p, s in rows:
        ssa = "dry run" if cmd == "preview" else "apply"
        print(f"| {name} | {cmd} | {p:.2f} | {ssa} | {s:.2f} | {p / s:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
