"""Checkov's Kubernetes checks on every manifest each stack renders (tools/testing/scan.py):
nothing fails beyond tools/testing/scan_waivers.py, every waiver is still needed, and the scanner
really runs — a missing or broken scanner fails these tests, it never skips them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.testing import scan
from tools.testing.pulumi_mocks import cached_run
from tools.testing.scan import Failure, Manifest, ScannerError, ScanResult
from tools.testing.scan_waivers import WAIVERS, Waiver, waiver_for

BAD = "deliberately-bad"
"""Not a stack: one privileged host-network Pod, scanned in the same checkov run."""
NETWORK_POLICY = "CKV2_K8S_6"


def _bad_pod() -> Manifest:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "ray"},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {"name": "c", "image": "busybox:1.37", "securityContext": {"privileged": True}}
            ],
        },
    }
    return Manifest("Pod", "ray", "bad", body, "test")


@pytest.fixture(scope="session")
def scans() -> Iterator[dict[str, ScanResult]]:
    # One checkov process for every stack (its import dominates the cost), one graph per stack.
    rendered = {stack: scan.render(stack) for stack in scan.STACKS}
    yield scan.scan({**rendered, BAD: [_bad_pod()]})


def _ray_pods(result: ScanResult) -> list[Manifest]:
    return [m for m in result.manifests if m.kind == "Pod"]


@pytest.mark.parametrize("stack", scan.STACKS)
def test_nothing_fails_beyond_the_waivers(scans: dict[str, ScanResult], stack: str) -> None:
    unwaived = [f.line() for f in scans[stack].failures if waiver_for(f) is None]
    assert not unwaived, "checkov failures without a waiver:\n" + "\n".join(unwaived)


def test_every_waiver_is_still_needed(scans: dict[str, ScanResult]) -> None:
    failures = [f for stack in scan.STACKS for f in scans[stack].failures]

    def unused(w: Waiver) -> list[str]:
        narrowed = [Waiver(w.check_id, (r,), w.reason, w.stacks) for r in w.resources]
        gaps = [
            f"pattern {n.resources[0]!r} matches nothing"
            for n in narrowed
            if not any(n.matches(f) for f in failures)
        ]
        gaps += [
            f"stack {s} does not need it"
            for s in w.stacks or scan.STACKS
            if not any(w.matches(f) for f in failures if f.stack == s)
        ]
        return gaps

    stale = [f"{w.check_id} {w.resources}: {gap}" for w in WAIVERS for gap in unused(w)]
    assert not stale, "waivers no longer needed (narrow or delete them):\n" + "\n".join(stale)


def test_every_waiver_gives_its_reason_in_one_line() -> None:
    for w in WAIVERS:
        assert w.reason.strip() and "\n" not in w.reason, w
        assert w.reason.split(":")[0], w
    assert len({(w.check_id, w.resources, w.stacks) for w in WAIVERS}) == len(WAIVERS)


def test_every_kubernetes_resource_is_scanned(scans: dict[str, ScanResult]) -> None:
    for stack in scan.STACKS:
        registered = {
            (r.type, r.name)
            for r in cached_run(stack).registrations
            if r.custom and r.type.startswith("kubernetes:") and r.type not in scan.NOT_SCANNED
        }
        scanned = {tuple(m.source.split(" ")[:2]) for m in scans[stack].manifests}
        assert registered <= scanned, (stack, registered - scanned)
        assert any(t == "kubernetes:networking.k8s.io/v1:NetworkPolicy" for t, _ in registered)


def test_each_pod_template_is_scanned_as_the_pod_kuberay_creates(
    scans: dict[str, ScanResult],
) -> None:
    for stack in scan.STACKS:
        (cluster,) = [m for m in scans[stack].manifests if m.kind == "RayCluster"]
        groups = [g["groupName"] for g in cluster.body["spec"]["workerGroupSpecs"]]
        pods = {m.name: m for m in _ray_pods(scans[stack])}
        assert sorted(pods) == sorted(["ray-head", *(f"ray-{g}-worker" for g in groups)])
        for pod in pods.values():
            labels = pod.body["metadata"]["labels"]
            assert labels["ray.io/cluster"] == cluster.name
            assert pod.namespace == cluster.namespace
            assert labels["ray.io/node-type"] == ("head" if pod.name == "ray-head" else "worker")
        head_containers = [c["name"] for c in pods["ray-head"].body["spec"]["containers"]]
        assert head_containers[-1] == scan.AUTOSCALER_CONTAINER, head_containers


def test_the_network_policy_covers_every_ray_pod(scans: dict[str, ScanResult]) -> None:
    for stack in scan.STACKS:
        for pod in _ray_pods(scans[stack]):
            assert scans[stack].passed(NETWORK_POLICY, pod.resource), (stack, pod.resource)


def test_the_scanner_flags_a_privileged_host_network_pod(scans: dict[str, ScanResult]) -> None:
    bad = scans[BAD]
    found = {f.check_id for f in bad.failures}
    # privileged, hostNetwork, and no NetworkPolicy selects it.
    assert {"CKV_K8S_16", "CKV_K8S_19", NETWORK_POLICY} <= found, sorted(found)
    assert all(f.resource == "Pod.ray.bad" for f in bad.failures)
    assert bad.passes, "checkov ran no check that passed: it did not really scan"


def test_a_missing_scanner_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "no-checkov"
    empty.mkdir()
    (empty / "pyproject.toml").write_text(
        '[project]\nname = "empty"\nversion = "0"\nrequires-python = ">=3.11"\n'
        "[tool.uv]\npackage = false\n"
    )
    monkeypatch.setattr(scan, "SCANNER_PROJECT", empty)
    monkeypatch.setenv("UV_OFFLINE", "1")
    with pytest.raises(ScannerError, match="checkov"):
        scan.scan({BAD: [_bad_pod()]})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ScannerError, match="uv not found"):
        scan.scan({BAD: [_bad_pod()]})


def test_type_tokens_give_api_version_and_kind() -> None:
    cases = {
        "kubernetes:core/v1:ServiceAccount": ("v1", "ServiceAccount"),
        "kubernetes:networking.k8s.io/v1:NetworkPolicy": ("networking.k8s.io/v1", "NetworkPolicy"),
        "kubernetes:batch/v1:Job": ("batch/v1", "Job"),
        "kubernetes:ray.io/v1:RayCluster": ("ray.io/v1", "RayCluster"),
    }
    for token, expected in cases.items():
        assert scan._api_version_kind(token) == expected


def test_failure_lines_name_stack_check_and_resource() -> None:
    f = Failure("dev", "CKV_K8S_22", "Use read-only filesystem", "Pod.ray.ray-head")
    assert f.line() == "dev CKV_K8S_22 Pod.ray.ray-head: Use read-only filesystem"
    assert f.kind == "Pod"
