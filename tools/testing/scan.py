"""Checkov's Kubernetes checks on every manifest each stack renders.

    python -m tools.testing.scan [--stack STACK ...] [--all] [--keep DIR]

Each stack's real `__main__.py` runs under the project's Pulumi mocks
(tools/testing/pulumi_mocks/, with the provider answers of the stack's `cloud`). Every
`kubernetes:*` custom resource it registers becomes one manifest, and each RayCluster pod template
(head and every worker group) also becomes a Pod the way KubeRay would create it — a scanner does
not look inside custom resources. Checkov runs once per stack on those manifests, offline, from its
own locked environment (tools/testing/scanner/).

Prints each failed check that tools/testing/scan_waivers.py does not waive, one per line —
`FAIL stack check-id resource: check name` — and exits 1 if there is any. `--all` also prints
the waived ones with their reasons; `--keep DIR` leaves the manifests in DIR/<stack>/ (which
must not hold any yet: checkov would scan those too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pulumi.runtime import rpc

from tools.testing.pulumi_mocks import Registration, cached_run
from tools.testing.scan_waivers import waiver_for

ROOT = Path(__file__).resolve().parents[2]
SCANNER_PROJECT = ROOT / "tools" / "testing" / "scanner"
STACKS = ("dev", "prod", "local", "gke-dev", "gke-prod")
RAYCLUSTER = "kubernetes:ray.io/v1:RayCluster"
NOT_SCANNED = {
    # Helm releases. The kuberay-operator chart: its manifests are upstream's, and the chart
    # renders remotely (fetched from the Helm repository at deploy time), so there is nothing
    # local to scan; what the program controls (values) is asserted by the unit and policy tiers.
    # The KubeRay CRDs' chart: upstream's schema documents, not workloads; checkov has no checks
    # for them.
    "kubernetes:helm.sh/v3:Release",
}
PLACEHOLDER = "placeholder-unknown-under-mocks"
# KubeRay's names for the group label of head pods and for the in-tree autoscaler sidecar.
HEAD_GROUP = "headgroup"
AUTOSCALER_CONTAINER = "autoscaler"
# Checkov offline: no platform mapping or downloads (BC_SKIP_MAPPING, --skip-download), no PyPI
# version check at import (CKV_SKIP_PACKAGE_UPDATE_CHECK), and no API key, so nothing is uploaded.
OFFLINE_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
CREDENTIAL_ENV = ("BC_API_KEY", "PRISMA_API_URL", "BC_API_URL", "BC_REPO_ID")
CHECKOV_TIMEOUT = 300.0


class ScannerError(RuntimeError):
    """Checkov is missing, crashed, or did not scan every manifest it was given."""


@dataclass(frozen=True)
class Manifest:
    """One object as the cluster would receive it (or as KubeRay would create it)."""

    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    source: str
    """Where it comes from: the Pulumi type token and name, or the RayCluster group."""

    @property
    def resource(self) -> str:
        """Checkov's id for it: `Kind.namespace.name` (`Kind.name` when cluster-scoped)."""
        return ".".join(p for p in (self.kind, self.namespace, self.name) if p)

    @property
    def filename(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.resource.lower()) + ".yaml"


@dataclass(frozen=True)
class Failure:
    """One failed check on one resource."""

    stack: str
    check_id: str
    check_name: str
    resource: str
    """Checkov's resource id, `Kind.namespace.name`."""

    @property
    def kind(self) -> str:
        return self.resource.split(".", 1)[0]

    def line(self) -> str:
        return f"{self.stack} {self.check_id} {self.resource}: {self.check_name}"


@dataclass(frozen=True)
class ScanResult:
    """Checkov's verdict on one stack's manifests."""

    stack: str
    manifests: tuple[Manifest, ...]
    failures: tuple[Failure, ...]
    passes: frozenset[tuple[str, str]]
    """(check id, resource) of every check that passed."""

    def passed(self, check_id: str, resource: str) -> bool:
        return (check_id, resource) in self.passes


# --- rendering -----------------------------------------------------------------------------


def _api_version_kind(token: str) -> tuple[str, str]:
    """`kubernetes:core/v1:ServiceAccount` → (`v1`, `ServiceAccount`)."""
    _, module, kind = token.split(":")
    group, version = module.rsplit("/", 1)
    return (version if group == "core" else f"{group}/{version}"), kind


def _plain(value: Any) -> Any:
    """Registration inputs as YAML-ready data: secrets unwrapped, whole floats back to ints (the
    wire carries numbers as doubles), values unknown under mocks as a placeholder."""
    if isinstance(value, Mapping):
        signature = value.get(rpc._special_sig_key)
        if signature == rpc._special_secret_sig:
            return _plain(value.get("value"))
        if signature is not None:  # a resource reference, asset or archive: no manifest field
            return PLACEHOLDER
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return PLACEHOLDER if value == rpc.UNKNOWN else value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    return PLACEHOLDER


def _manifest(token: str, name: str, inputs: Mapping[str, Any]) -> Manifest:
    api_version, kind = _api_version_kind(token)
    body = _plain(inputs)
    declared = (body.get("apiVersion"), body.get("kind"))
    if declared != (None, None) and declared != (api_version, kind):
        raise ScannerError(f"{token} {name}: inputs say {declared}, the type token says otherwise")
    metadata = body.setdefault("metadata", {})
    # Pulumi autonames objects registered without a name; any stable name serves the scanner.
    metadata.setdefault("name", name)
    body = {"apiVersion": api_version, "kind": kind, **body}
    return Manifest(kind, metadata.get("namespace", ""), metadata["name"], body, f"{token} {name}")


def _autoscaler(spec: Mapping[str, Any], head_image: str) -> dict[str, Any]:
    """The in-tree autoscaler sidecar KubeRay adds to the head Pod, from `autoscalerOptions`
    (ray-operator/controllers/ray/common/pod.go, BuildAutoscalerContainer)."""
    options = spec.get("autoscalerOptions") or {}
    container: dict[str, Any] = {
        "name": AUTOSCALER_CONTAINER,
        "image": options.get("image", head_image),
        "imagePullPolicy": options.get("imagePullPolicy", "IfNotPresent"),
        "command": ["/bin/bash", "-lc", "--"],
        "args": ["ray kuberay-autoscaler"],
        "resources": options.get(
            "resources",
            {
                "limits": {"cpu": "500m", "memory": "512Mi"},
                "requests": {"cpu": "500m", "memory": "512Mi"},
            },
        ),
    }
    for key in ("securityContext", "env", "envFrom", "volumeMounts"):
        if key in options:
            container[key] = options[key]
    return container


def ray_pods(raycluster: Manifest) -> list[Manifest]:
    """The Pods KubeRay creates from a RayCluster: one per pod template, in the RayCluster's
    namespace, with the labels KubeRay puts on its pods (so NetworkPolicies select them)."""
    metadata = raycluster.body["metadata"]
    spec = raycluster.body["spec"]
    cluster = metadata["name"]
    groups = [("head", HEAD_GROUP, f"{cluster}-head", spec["headGroupSpec"]["template"])]
    groups += [
        ("worker", g["groupName"], f"{cluster}-{g['groupName']}-worker", g["template"])
        for g in spec.get("workerGroupSpecs", [])
    ]
    pods = []
    for node_type, group, name, template in groups:
        template_meta = template.get("metadata") or {}
        pod_spec = json.loads(json.dumps(template["spec"]))
        if node_type == "head" and spec.get("enableInTreeAutoscaling"):
            pod_spec["containers"].append(_autoscaler(spec, pod_spec["containers"][0]["image"]))
        labels = {
            **template_meta.get("labels", {}),
            "ray.io/cluster": cluster,
            "ray.io/node-type": node_type,
            "ray.io/group": group,
            "ray.io/is-ray-node": "yes",
        }
        pod_meta: dict[str, Any] = {"name": name, "namespace": raycluster.namespace}
        pod_meta["labels"] = labels
        if template_meta.get("annotations"):
            pod_meta["annotations"] = template_meta["annotations"]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}
        pods.append(
            Manifest("Pod", raycluster.namespace, name, body, f"{raycluster.source} {group}")
        )
    return pods


def manifests_of(registrations: Iterable[Registration]) -> list[Manifest]:
    """Every manifest a run registers (`tools.testing.pulumi_mocks.Registration`s), plus the
    RayCluster Pods; the CRDs and the Helm release are left out (see NOT_SCANNED)."""
    out: list[Manifest] = []
    for reg in registrations:
        if not (reg.custom and reg.type.startswith("kubernetes:")) or reg.type in NOT_SCANNED:
            continue
        manifest = _manifest(reg.type, reg.name, reg.inputs)
        out.append(manifest)
        if reg.type == RAYCLUSTER:
            out.extend(ray_pods(manifest))
    resources = [m.resource for m in out]
    duplicates = sorted({r for r in resources if resources.count(r) > 1})
    if duplicates:
        raise ScannerError(f"two manifests would share a checkov resource id: {duplicates}")
    return out


def render(stack: str) -> list[Manifest]:
    """Every manifest the stack's program registers, plus its RayCluster's Pods."""
    return manifests_of(cached_run(stack).registrations)


def write(manifests: Sequence[Manifest], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise ScannerError(f"{directory} is not empty: checkov would scan what it holds too")
    for m in manifests:
        (directory / m.filename).write_text(yaml.safe_dump(m.body, sort_keys=False))


# --- checkov -------------------------------------------------------------------------------


# Importing checkov takes ~7 s (it loads every framework) and scanning a stack ~1 s, so one
# process imports it once and forks a child per stack; each child runs exactly what the `checkov`
# console script runs, `Checkov(argv).run()`, with its report on stdout redirected to a file.
DRIVER = """
import json, os, sys, traceback, warnings
warnings.simplefilter("ignore", category=SyntaxWarning)
from checkov.main import Checkov
sep = sys.argv.index("--")
args, jobs = sys.argv[1:sep], sys.argv[sep + 1:]
children = {}
for directory, report in zip(jobs[::2], jobs[1::2]):
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        try:
            code = Checkov([*args, "--directory", directory]).run() or 0
        except BaseException:
            traceback.print_exc()
            code = 2
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    children[pid] = directory
codes = {}
while children:
    pid, status = os.wait()
    codes[children.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps(codes))
"""
CHECKOV_ARGS = ("--framework", "kubernetes", "--output", "json", "--compact", "--skip-download")


def checkov_command(jobs: Mapping[Path, Path]) -> list[str]:
    """Checkov from its locked environment on each directory (→ its JSON report file):
    Kubernetes checks only, offline. For one directory by hand, the same is
    `uv run --frozen --project tools/testing/scanner checkov --directory DIR ` + CHECKOV_ARGS."""
    uv = shutil.which("uv")
    if uv is None:
        raise ScannerError("uv not found on PATH: the scanner runs as `uv run --project ...`")
    pairs = [str(p) for directory, report in jobs.items() for p in (directory, report)]
    return [
        uv, "run", "--frozen", "--quiet", "--project", str(SCANNER_PROJECT),
        "python", "-c", DRIVER, *CHECKOV_ARGS, "--", *pairs,
    ]  # fmt: skip


def checkov_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
    # The scanner's own environment, not the one running the tests.
    env.pop("VIRTUAL_ENV", None)
    return {**env, **OFFLINE_ENV}


def _parse(stack: str, manifests: Sequence[Manifest], output: str) -> ScanResult:
    try:
        report = json.loads(output)
    except json.JSONDecodeError as err:
        raise ScannerError(
            f"checkov wrote no JSON report for stack {stack} ({err}):\n{output[-4000:]}"
        ) from err
    reports = report if isinstance(report, list) else [report]
    kubernetes = [r for r in reports if r.get("check_type") == "kubernetes"]
    if len(kubernetes) != 1:
        raise ScannerError(f"checkov scanned no Kubernetes manifest for stack {stack}: {report}")
    summary = kubernetes[0]["summary"]
    # Checkov skips files it cannot read as Kubernetes objects: every manifest must count.
    if summary["parsing_errors"] or summary["resource_count"] != len(manifests):
        raise ScannerError(
            f"checkov read {summary['resource_count']} of {len(manifests)} manifests for stack "
            f"{stack} ({summary['parsing_errors']} parsing errors)"
        )
    results = kubernetes[0]["results"]
    failures = {
        Failure(stack, c["check_id"], c["check_name"], c["resource"])
        for c in results["failed_checks"]
    }
    return ScanResult(
        stack,
        tuple(manifests),
        tuple(sorted(failures, key=lambda f: (f.resource, f.check_id))),
        frozenset((c["check_id"], c["resource"]) for c in results["passed_checks"]),
    )


def scan(
    rendered: Mapping[str, Sequence[Manifest]], keep: Path | None = None
) -> dict[str, ScanResult]:
    """Checkov on each stack's manifests, one run (one graph) per stack: a NetworkPolicy of one
    stack must not select another stack's Pods."""
    with tempfile.TemporaryDirectory(prefix="ray-platform-scan-") as tmp:
        base = keep or Path(tmp)
        reports = Path(tmp) / "reports"
        reports.mkdir()
        jobs = {}
        for stack, manifests in rendered.items():
            write(manifests, base / stack)
            jobs[base / stack] = reports / f"{stack}.json"
        try:
            proc = subprocess.run(
                checkov_command(jobs),
                env=checkov_env(),
                cwd=ROOT,
                text=True,
                capture_output=True,
                timeout=CHECKOV_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ScannerError(f"checkov did not run: {err}") from err
        try:
            codes = json.loads(proc.stdout.splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise ScannerError(
                f"checkov did not start (exit {proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            ) from None
        results = {}
        for stack, manifests in rendered.items():
            report = jobs[base / stack]
            output = report.read_text() if report.exists() else ""
            code = int(codes.get(str(base / stack), -1))
            if code not in (0, 1):  # 1: some check failed; anything else is a crash
                raise ScannerError(
                    f"checkov exited {code} on stack {stack}:\n{proc.stderr[-4000:]}"
                )
            results[stack] = _parse(stack, manifests, output)
    return results


def scan_stacks(stacks: Sequence[str] = STACKS, keep: Path | None = None) -> dict[str, ScanResult]:
    return scan({stack: render(stack) for stack in stacks}, keep)


# --- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.testing.scan", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", action="append", choices=STACKS, help="default: every stack")
    parser.add_argument("--all", action="store_true", help="also print waived failures")
    parser.add_argument("--keep", type=Path, help="write the manifests under DIR/<stack>/")
    args = parser.parse_args(argv)
    results = scan_stacks(args.stack or STACKS, args.keep)
    unwaived = 0
    for result in results.values():
        for failure in result.failures:
            waiver = waiver_for(failure)
            if waiver is None:
                unwaived += 1
                print(f"FAIL {failure.line()}")
            elif args.all:
                print(f"waived {failure.line()}  # {waiver.reason}")
    for result in results.values():
        print(
            f"{result.stack}: {len(result.manifests)} manifests, {len(result.passes)} passed, "
            f"{len(result.failures)} failed",
            file=sys.stderr,
        )
    print(f"{unwaived} failures not waived", file=sys.stderr)
    return 1 if unwaived else 0


if __name__ == "__main__":
    sys.exit(main())
