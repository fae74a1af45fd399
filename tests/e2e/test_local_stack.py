"""End to end: the real Pulumi engine runs the `local` stack against a real control plane.

Real: the Pulumi CLI, the Python language host, the Kubernetes provider, etcd, kube-apiserver,
kube-controller-manager and the KubeRay operator, all built from Go modules by tools/build.py and
started on loopback by tools/devcluster/localcluster/. Missing here: a scheduler and kubelets, so
Pods stay Pending; everything up to the operator creating the head Pod is checked for real.

The tests run in file order against one fresh cluster: preview, up, no-op up, a bad setting,
destroy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from tools.devcluster import engine, localcluster
from tools.devcluster.kube import Kube

pytestmark = pytest.mark.e2e

NS = "ray"
RAYCLUSTER = f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/ray"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayclusters.ray.io"
BUILTIN_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


@dataclass
class E2E:
    kube: Kube
    eng: engine.Engine
    state: Path
    stack: auto.Stack


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    root = tmp_path_factory.mktemp("e2e")
    cluster_dir = root / "cluster"
    kubeconfig = localcluster.up(cluster_dir)
    try:
        eng = engine.engine(root / "state", kubeconfig)
        stack = engine.local_stack(eng, engine.work_dir(root / "state"))
        yield E2E(Kube(kubeconfig), eng, root / "state", stack)
    finally:
        localcluster.down(cluster_dir)


def _resources(stack: auto.Stack) -> list[dict[str, Any]]:
    deployment = stack.export_stack().deployment or {}
    return list(deployment.get("resources") or [])


def _deployed(stack: auto.Stack, typ: str) -> dict[str, Any]:
    return next(r for r in _resources(stack) if r["type"] == typ)


def _missing(sent: Any, live: Any, path: str = "") -> list[str]:
    """Paths of what we sent that the live object lacks or changed (pruned or rewritten)."""
    if isinstance(sent, dict):
        if not isinstance(live, dict):
            return [path or "."]
        return [m for k, v in sent.items() for m in _missing(v, live.get(k), f"{path}.{k}")]
    if isinstance(sent, list):
        if not isinstance(live, list) or len(live) < len(sent):
            return [path]
        return [m for i, v in enumerate(sent) for m in _missing(v, live[i], f"{path}[{i}]")]
    return [] if sent == live else [f"{path}: sent {sent!r}, stored {live!r}"]


def test_preview_on_a_cluster_that_never_saw_kuberay(e2e: E2E) -> None:
    assert e2e.kube.get(CRD) is None
    result = e2e.stack.preview(color="never")
    assert engine.summary_changes(result.change_summary).get("create", 0) >= 10
    assert e2e.kube.get(CRD) is None  # preview changed nothing


def test_up_creates_the_raycluster_as_sent(e2e: E2E) -> None:
    result = e2e.stack.up(color="never")
    assert result.summary.result == "succeeded"
    live = e2e.kube.get(RAYCLUSTER)
    assert live is not None
    sent = _deployed(e2e.stack, "kubernetes:ray.io/v1:RayCluster")["inputs"]["spec"]
    assert _missing(sent, live["spec"]) == []
    assert live["spec"]["rayVersion"] == "2.60.0"
    ns = e2e.kube.get(f"/api/v1/namespaces/{NS}")
    assert ns is not None
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert result.outputs["dashboardPortForward"].value == (
        "kubectl -n ray port-forward svc/ray-head-svc 8265:8265"
    )
    assert json.loads(result.outputs["runtimeEnv"].value)["pip"] == ["requests==2.32.3"]
    pvc = e2e.kube.get(f"/api/v1/namespaces/{NS}/persistentvolumeclaims/ray-shared")
    assert pvc is not None and pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_operator_creates_head_pod_and_services(e2e: E2E) -> None:
    """The API server enforces Pod Security `restricted` in the Ray namespace when the operator
    creates pods: a head Pod (with KubeRay's autoscaler sidecar) exists only if admitted."""
    pods_path = f"/api/v1/namespaces/{NS}/pods?labelSelector=ray.io%2Fnode-type%3Dhead"
    (head,) = e2e.kube.wait("the operator's head Pod", lambda: e2e.kube.items(pods_path))
    spec = head["spec"]
    assert spec["serviceAccountName"] == "ray-head"
    names = {c["name"] for c in spec["containers"]}
    assert {"ray-head", "autoscaler"} <= names, names  # KubeRay's sidecar, admitted too
    container = next(c for c in spec["containers"] if c["name"] == "ray-head")
    assert container["image"] == "rayproject/ray:2.60.0-py311"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/mnt/shared"] == "shared" and mounts["/tmp/ray"] == "ray-logs"
    # KubeRay shares its `ray-logs` emptyDir with the autoscaler by name: one /tmp/ray for both.
    autoscaler = next(c for c in spec["containers"] if c["name"] == "autoscaler")
    assert {m["mountPath"]: m["name"] for m in autoscaler["volumeMounts"]}["/tmp/ray"] == "ray-logs"
    assert [v["name"] for v in spec["volumes"]].count("ray-logs") == 1
    assert mounts["/etc/ray-platform"] == "runtime-env"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "ray-shared"
    assert volumes["runtime-env"]["configMap"]["name"] == "ray-runtime-env"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RAY_PLATFORM_RUNTIME_ENV"] == "/etc/ray-platform/runtime_env.json"
    assert env["PYTHONPATH"].startswith("/mnt/shared/python-packages/")
    assert env["RAY_AUTH_MODE"] == "token"  # the operator wired token auth
    init = [c["name"] for c in spec.get("initContainers", [])]
    assert init[:2] == ["wait-for-shared-dir", "install-shared-packages"]
    head_svc = e2e.kube.wait(
        "the head Service", lambda: e2e.kube.get(f"/api/v1/namespaces/{NS}/services/ray-head-svc")
    )
    assert head_svc["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: p["port"] for p in head_svc["spec"]["ports"]}
    assert ports["dashboard"] == 8265
    assert e2e.kube.wait(
        "the auth token Secret", lambda: e2e.kube.get(f"/api/v1/namespaces/{NS}/secrets/ray")
    )


def test_a_worker_pod_is_admitted_under_restricted(e2e: E2E) -> None:
    """The local stack starts one worker: KubeRay's worker Pod, with its injected
    wait-gcs-ready init container, passes the restricted admission too."""
    pods_path = f"/api/v1/namespaces/{NS}/pods?labelSelector=ray.io%2Fnode-type%3Dworker"
    (worker,) = e2e.kube.wait("the operator's worker Pod", lambda: e2e.kube.items(pods_path))
    spec = worker["spec"]
    assert spec["serviceAccountName"] == "ray-worker"
    assert spec["automountServiceAccountToken"] is False
    init = [c["name"] for c in spec.get("initContainers", [])]
    assert "wait-gcs-ready" in init, init
    for c in [*spec["containers"], *spec.get("initContainers", [])]:
        sc = c.get("securityContext") or {}
        assert sc.get("allowPrivilegeEscalation") is False, c["name"]
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"]


def test_the_restricted_namespace_refuses_a_privileged_pod(e2e: E2E) -> None:
    """The admission the two tests above rely on is real: a root Pod is refused."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root-probe", "namespace": NS},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "securityContext": {"runAsUser": 0}}]
        },
    }
    with pytest.raises(RuntimeError, match="violates PodSecurity"):
        e2e.kube._request(
            "POST", f"/api/v1/namespaces/{NS}/pods", json.dumps(pod).encode(), "application/json"
        )


def test_second_up_changes_nothing(e2e: E2E) -> None:
    before = e2e.kube.get(RAYCLUSTER)
    assert before is not None
    result = e2e.stack.up(color="never")
    assert engine.summary_changes(result.summary.resource_changes) == {}
    after = e2e.kube.get(RAYCLUSTER)
    assert after is not None and after["metadata"]["generation"] == before["metadata"]["generation"]


def test_changed_packages_update_the_cluster_and_reach_a_new_head(e2e: E2E) -> None:
    """The RayCluster is updated in place; KubeRay (upgradeStrategy Recreate) recreates its
    pods, and the auth token Secret survives."""
    before = e2e.kube.get(RAYCLUSTER)
    assert before is not None
    ray = engine.stack_file_config("local")["ray-platform:ray"]
    ray["sharedPackages"] = ["tabulate==0.9.0", "six==1.16.0"]
    engine.work_dir(e2e.state, overrides={"ray-platform:ray": ray})
    try:
        result = e2e.stack.up(color="never")
    finally:
        engine.work_dir(e2e.state)
    changes = engine.summary_changes(result.summary.resource_changes)
    assert changes.get("update") == 1 and not changes.get("replace"), changes
    after = e2e.kube.get(RAYCLUSTER)
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
    head_env = after["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    new_path = next(e["value"] for e in head_env if e["name"] == "PYTHONPATH")

    def new_head() -> list[dict[str, Any]]:
        pods = e2e.kube.items(
            f"/api/v1/namespaces/{NS}/pods?labelSelector=ray.io%2Fnode-type%3Dhead"
        )
        return [
            p
            for p in pods
            if any(
                e.get("value") == new_path
                for c in p["spec"]["containers"]
                for e in c.get("env", [])
            )
        ]

    assert e2e.kube.wait("a head Pod with the new PYTHONPATH", new_head)
    token = e2e.kube.get(f"/api/v1/namespaces/{NS}/secrets/ray")
    assert token is not None  # the same Secret: clients keep their token
    # Back to the committed stack file: updated again, then the no-op checks hold.
    again = e2e.stack.up(color="never").summary.resource_changes
    assert engine.summary_changes(again).get("update") == 1


def test_bad_setting_fails_preview_with_one_line_and_changes_nothing(e2e: E2E) -> None:
    before = e2e.kube.get(RAYCLUSTER)
    assert before is not None
    resources_before = len(_resources(e2e.stack))
    ray = engine.stack_file_config("local")["ray-platform:ray"]
    ray["workerGroups"][0]["minReplicas"] = 3
    ray["workerGroups"][0]["maxReplicas"] = 1
    engine.work_dir(e2e.state, overrides={"ray-platform:ray": ray})
    try:
        with pytest.raises(auto.CommandError) as info:
            e2e.stack.preview(color="never")
    finally:
        engine.work_dir(e2e.state)  # back to the stack file as committed
    expected = "ray-platform:ray.workerGroups[0].maxReplicas (1) is below minReplicas (3)"
    text = str(info.value)
    assert expected in text
    assert "Traceback" not in text
    line = next(line for line in text.splitlines() if expected in line)
    assert line.strip().endswith("(3)")
    after = e2e.kube.get(RAYCLUSTER)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert len(_resources(e2e.stack)) == resources_before


def test_destroy_leaves_nothing(e2e: E2E) -> None:
    e2e.stack.destroy(color="never")
    kube = e2e.kube
    kube.wait("namespace ray to go", lambda: kube.get(f"/api/v1/namespaces/{NS}") is None)
    assert kube.get(CRD) is None
    crds = kube.items("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert [c["metadata"]["name"] for c in crds if c["spec"]["group"] == "ray.io"] == []
    assert kube.items("/api/v1/persistentvolumes") == []
    namespaces = {n["metadata"]["name"] for n in kube.items("/api/v1/namespaces")}
    assert namespaces <= BUILTIN_NAMESPACES
    assert all(r["type"] == "pulumi:pulumi:Stack" for r in _resources(e2e.stack))
