"""Where the time of `pulumi up` / `preview` of the local stack goes: the engine's own trace.

    uv run python -m bench.trace [--out DIR] [--runs N]  # a local control plane, as bench.run
    uv run python -m bench.trace --analyse DIR           # summarise saved traces (no cluster)

On one fresh local control plane (as `bench.run`), with the CLI itself (what the Automation
API's `stack.up()` runs, without its follow-up commands, timed on their own) and the engine's
OpenTelemetry export (`--otel-traces file://…`, the JSON form of the spans `--tracing` records):

- a preview on the cluster that never saw KubeRay (it must plan creates only and create no CRD),
  then a warm-up `up`;
- `up`, no-op, and `preview` of the unchanged stack;
- N times: `destroy` (not traced), `up` cold, and a no-op right after it;
- the commands `stack.up()` runs after `up` (`stack output --json`, the same `--show-secrets`,
  `stack history --json`) and a bare `pulumi version`;
- one more `up` (it must change nothing), and `destroy` (it must leave no CRD, namespace or
  volume of the stack);
- the checkpoint's size, per resource.

Each trace is saved as `<case>.json` in DIR with `walls.json`; the summary lists, per case, the
run cut into phases (CLI start, checkpoint read, Python start, provider start, registrations,
shutdown) and the spans that cover the most time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES = ("noop", "preview", "cold")
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayclusters.ray.io"
BUILTIN_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


@dataclass(frozen=True)
class Span:
    name: str
    service: str
    start: float
    end: float
    span_id: str
    parent_id: str
    attributes: Mapping[str, Any]

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _attr_value(value: Mapping[str, Any]) -> Any:
    for key in ("stringValue", "intValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    return None


def spans(path: Path) -> list[Span]:
    """Every span of an OTLP/JSON file (one JSON document, or one per line)."""
    text = path.read_text()
    docs: list[Any] = []
    try:
        docs = [json.loads(text)]
    except json.JSONDecodeError:
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    found = []
    for doc in docs:
        for rs in doc.get("resourceSpans", []):
            res = {a["key"]: _attr_value(a["value"]) for a in rs["resource"].get("attributes", [])}
            service = str(res.get("service.name", "?"))
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    found.append(
                        Span(
                            name=s["name"],
                            service=service,
                            start=int(s["startTimeUnixNano"]) / 1e9,
                            end=int(s["endTimeUnixNano"]) / 1e9,
                            span_id=s.get("spanId", ""),
                            parent_id=s.get("parentSpanId", ""),
                            attributes={
                                a["key"]: _attr_value(a["value"]) for a in s.get("attributes", [])
                            },
                        )
                    )
    return sorted(found, key=lambda s: s.start)


def covered(intervals: Iterable[tuple[float, float]]) -> float:
    """Seconds covered by the union of intervals (overlapping calls counted once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def by_name(found: list[Span]) -> list[tuple[str, int, float, float, float]]:
    """(name, count, sum of durations, wall covered, longest) per span name, longest first."""
    groups: dict[str, list[Span]] = defaultdict(list)
    for s in found:
        groups[f"{s.service}: {s.name}"].append(s)
    rows = [
        (
            name,
            len(g),
            sum(s.seconds for s in g),
            covered((s.start, s.end) for s in g),
            max(s.seconds for s in g),
        )
        for name, g in groups.items()
    ]
    return sorted(rows, key=lambda r: -r[3])


def _first(found: list[Span], name: str, service: str = "pulumi-cli") -> Span | None:
    return next((s for s in found if s.name == name and s.service == service), None)


PROVIDER_CALLS = ("Check", "Diff", "Create", "Update", "Delete", "Read")


def phases(found: list[Span]) -> list[tuple[str, float]]:
    """One `pulumi up`/`preview`, cut into consecutive phases (seconds), from the CLI's spans."""
    root = _first(found, "pulumi")
    plan = _first(found, "pulumi-plan")
    run = _first(found, "pulumirpc.LanguageRuntime/Run")
    if root is None or plan is None or run is None:
        return []
    snapshot = _first(found, "diyBackend.getSnapshot")
    registrations = [
        s
        for s in found
        if s.name == "pulumirpc.ResourceMonitor/RegisterResource" and s.start >= run.start
    ]
    first_registration = registrations[0].start if registrations else run.end
    provider = next(
        (
            s
            for s in found
            if s.name == "newPlugin" and "kubernetes" in str(s.attributes.get("prefix"))
        ),
        None,
    )
    configure = _first(found, "pulumirpc.ResourceProvider/Configure")
    construct = _first(found, "pulumirpc.ResourceProvider/Construct")
    calls = [
        (s.start, s.end)
        for s in found
        if s.service == "pulumi-cli"
        and s.name.startswith("pulumirpc.ResourceProvider/")
        and s.name.rsplit("/", 1)[-1] in PROVIDER_CALLS
    ]
    snap = snapshot.seconds if snapshot else 0.0
    rows = [
        ("CLI start, stack and config", plan.start - root.start - snap),
        ("checkpoint read (getSnapshot)", snap),
        ("engine plan set-up, language host", run.start - plan.start),
        ("Python program start, to its first registration", first_registration - run.start),
    ]
    if provider and configure:
        rows.append(("provider start (plugin launch + Configure)", configure.end - provider.start))
    rows.append(("registrations until the program exits", run.end - first_registration))
    if construct:
        rows.append(("  of which the CRDs' ConfigGroup (Construct)", construct.seconds))
    rows.append(("  of which provider Check/Diff/Create/... (covered)", covered(calls)))
    rows.append(("engine shutdown, checkpoint write", root.end - run.end))
    return rows


def summary(found: list[Span], wall: float | None = None) -> str:
    if not found:
        return "  (no spans)\n"
    t0 = min(s.start for s in found)
    t1 = max(s.end for s in found)
    lines = [
        f"  spans: {len(found)}; traced {t1 - t0:.2f}s" + (f", wall {wall:.2f}s" if wall else "")
    ]
    lines.append("  phases (s):")
    lines.extend(f"    {seconds:7.2f}  {name}" for name, seconds in phases(found))
    lines.append("  top spans by wall covered (name, count, sum s, covered s, longest s):")
    for name, n, total, cov, longest in by_name(found)[:40]:
        lines.append(f"    {cov:7.2f} {total:7.2f} {longest:6.2f} x{n:<4} {name}")
    ids = {s.span_id for s in found}
    lines.append("  roots and their children (start offset, seconds):")
    roots = [s for s in found if s.parent_id not in ids]
    children: dict[str, list[Span]] = defaultdict(list)
    for s in found:
        children[s.parent_id].append(s)
    for r in roots:
        if r.seconds < 0.05:
            continue
        lines.append(f"    {r.start - t0:7.2f} {r.seconds:7.2f} {r.service}: {r.name}")
        for c in children[r.span_id]:
            if c.seconds >= 0.05:
                lines.append(f"      {c.start - t0:7.2f} {c.seconds:7.2f} {c.name}")
    return "\n".join(lines) + "\n"


def _pulumi(env: Mapping[str, str], cwd: Path, args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        ["pulumi", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"pulumi {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, proc.stdout


def checkpoint_sizes(state: Path) -> dict[str, Any]:
    """The stack's checkpoint: bytes on disk, and per resource its inputs and outputs."""
    path = state / ".pulumi" / "stacks" / "ray-platform" / "local.json"
    data = json.loads(path.read_text())
    resources = (data.get("checkpoint", {}).get("latest") or {}).get("resources") or []
    return {
        "bytes": path.stat().st_size,
        "resources": [
            {
                "type": r["type"],
                "name": r["urn"].rsplit("::", 1)[-1],
                "inputs": len(json.dumps(r.get("inputs") or {})),
                "outputs": len(json.dumps(r.get("outputs") or {})),
            }
            for r in resources
        ],
    }


def leftovers(kube: Any) -> list[str]:
    """What a destroyed stack left: KubeRay CRDs, namespaces, volumes (namespaces still
    terminating are waited for)."""
    kube.wait(
        "the stack's namespaces to go",
        lambda: (
            {n["metadata"]["name"] for n in kube.items("/api/v1/namespaces")} <= BUILTIN_NAMESPACES
        ),
        300,
    )
    crds = kube.items("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    return [
        *(f"CRD {c['metadata']['name']}" for c in crds if c["spec"]["group"] == "ray.io"),
        *(f"PV {v['metadata']['name']}" for v in kube.items("/api/v1/persistentvolumes")),
    ]


def measure(out: Path, runs: int = 1) -> dict[str, float]:
    from bench.run import _wait_gone
    from tools.devcluster import engine, localcluster
    from tools.devcluster.kube import Kube

    root = Path(tempfile.mkdtemp(prefix="ray-platform-trace-"))
    kubeconfig = localcluster.up(root / "cluster")
    walls: dict[str, float] = {}
    try:
        kube = Kube(kubeconfig)
        eng = engine.engine(root / "state", kubeconfig)
        wd = engine.work_dir(root / "state")
        stack = engine.local_stack(eng, wd)
        # The e2e guarantees, checked on the way: a preview on a cluster that never saw KubeRay
        # plans every create and changes nothing ...
        start = time.perf_counter()
        fresh = engine.summary_changes(stack.preview(color="never").change_summary)
        walls["fresh preview (Automation API)"] = time.perf_counter() - start
        assert fresh.get("create", 0) >= 10 and set(fresh) == {"create"}, fresh
        assert kube.get(CRD) is None, "a preview created the RayCluster CRD"
        stack.up(color="never")  # warm-up
        common = ["--stack", "local", "--non-interactive", "--color", "never"]

        def traced(case: str, args: list[str]) -> None:
            trace = out / f"{case}.json"
            walls[case], _ = _pulumi(eng.env, wd, [*args, *common, f"--otel-traces=file://{trace}"])
            print(f"[trace] {case}: {walls[case]:.2f}s", file=sys.stderr)

        traced("noop", ["up", "--yes", "--skip-preview"])
        traced("preview", ["preview"])
        (out / "checkpoint.json").write_text(json.dumps(checkpoint_sizes(root / "state"), indent=1))
        for i in range(runs):
            stack.destroy(color="never")
            _wait_gone(kube)
            traced("cold" if i == 0 else f"cold-{i + 1}", ["up", "--yes", "--skip-preview"])
            # Right after CRDs were created: the API server builds its OpenAPI document anew.
            traced(f"noop-after-cold-{i + 1}", ["up", "--yes", "--skip-preview"])
        for name, args in {
            "version": ["version"],
            "stack output": ["stack", "output", "--json", *common],
            "stack output --show-secrets": [
                "stack",
                "output",
                "--json",
                "--show-secrets",
                *common,
            ],
            "stack history": ["stack", "history", "--json", *common],
        }.items():
            walls[name], _ = _pulumi(eng.env, wd, args)
        # ... an up right after a cold one changes nothing ...
        again = engine.summary_changes(stack.up(color="never").summary.resource_changes)
        assert again == {}, f"a second up changed {again}"
        (out / "walls.json").write_text(json.dumps(walls, indent=1))
        # ... and destroy leaves nothing of the stack's behind.
        stack.destroy(color="never")
        assert leftovers(kube) == [], leftovers(kube)
    finally:
        localcluster.down(root / "cluster")
    return walls


def analyse(out: Path) -> str:
    walls_path = out / "walls.json"
    walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
    text = [f"walls (s): {json.dumps({k: round(v, 2) for k, v in walls.items()})}\n"]
    traces = sorted(p for p in out.glob("*.json") if p.stem not in ("walls", "checkpoint"))
    order = {case: i for i, case in enumerate(CASES)}
    for path in sorted(traces, key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        text.append(f"== {path.stem}\n" + summary(spans(path), walls.get(path.stem)))
    cp = out / "checkpoint.json"
    if cp.exists():
        data = json.loads(cp.read_text())
        text.append(f"== checkpoint: {data['bytes']} bytes\n")
        for r in sorted(data["resources"], key=lambda r: -(r["inputs"] + r["outputs"]))[:8]:
            text.append(f"  {r['inputs']:>8} in {r['outputs']:>8} out  {r['type']} {r['name']}\n")
    return "".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace")
    parser.add_argument("--out", type=Path, help="where to keep the traces (default: a temp dir)")
    parser.add_argument("--analyse", type=Path, help="summarise the traces in this directory")
    parser.add_argument("--runs", type=int, default=1, help="cold runs (each a destroy before)")
    args = parser.parse_args(argv)
    if args.analyse:
        print(analyse(args.analyse))
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="ray-platform-traces-"))
    out.mkdir(parents=True, exist_ok=True)
    measure(out, args.runs)
    print(f"traces in {out}")
    print(analyse(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
