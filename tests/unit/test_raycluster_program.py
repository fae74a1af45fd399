"""The RayCluster as the real program registers it (every stack, under mocks): what KubeRay, the
autoscaler and the Kubernetes provider do with it on a running cluster."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from tools.testing.pulumi_mocks import (
    TEST_SECRETS,
    ProgramRun,
    cached_run,
    run_program,
    stack_config,
)
from tools.testing.pulumi_mocks.gcp import GkeMocks

STACKS = ("dev", "prod", "local")


def _raycluster(run: ProgramRun) -> dict[str, Any]:
    return run.one("kubernetes:ray.io/v1:RayCluster").inputs


@pytest.mark.parametrize("stack", STACKS)
def test_apply_forces_ownership_back_from_the_autoscaler(stack: str) -> None:
    """`workerGroupSpecs` is an atomic list: after the autoscaler has patched `replicas`, only a
    forced server-side apply can change the RayCluster. pulumi-kubernetes forces when the
    object's own annotation says so, on the update and on its preview's dry-run alike."""
    annotations = _raycluster(cached_run(stack))["metadata"]["annotations"]
    assert annotations["pulumi.com/patchForce"] == "true"


@pytest.mark.parametrize("stack", ["gke-dev", "gke-prod"])
def test_apply_is_forced_on_gke_too(stack: str) -> None:
    run = run_program(stack, mocks=GkeMocks())
    assert _raycluster(run)["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"


def test_the_force_annotation_is_known_at_preview() -> None:
    """A preview sends the same annotation, so the dry-run is forced as well (a plain value,
    never an unknown the provider would skip)."""
    run = run_program("dev", preview=True)
    metadata = _raycluster(run)["metadata"]
    assert metadata["annotations"] == {"pulumi.com/patchForce": "true"}


def _kuberay_head_pod(spec: dict[str, Any]) -> dict[str, Any]:
    """The head Pod's containers and volumes as KubeRay 1.6.1 builds them (common/pod.go):
    the autoscaler sidecar appended, then `addEmptyDir` for `ray-logs` at /tmp/ray on the Ray
    container and on the autoscaler. `addEmptyDir` skips a container that already mounts the
    path, and creates the volume only when none of that name exists."""
    pod: dict[str, Any] = copy.deepcopy(spec["headGroupSpec"]["template"]["spec"])
    pod["containers"].append({"name": "autoscaler", "volumeMounts": []})

    def add_empty_dir(container: dict[str, Any], name: str, path: str) -> None:
        mounts = container.setdefault("volumeMounts", [])
        if any(m["mountPath"] == path for m in mounts):
            return
        if not any(v["name"] == name for v in pod["volumes"]):
            pod["volumes"].append({"name": name, "emptyDir": {}})
        mounts.append({"name": name, "mountPath": path})

    for container in (pod["containers"][0], pod["containers"][-1]):
        add_empty_dir(container, "ray-logs", "/tmp/ray")
    return pod


@pytest.mark.parametrize("stack", STACKS)
def test_the_autoscaler_shares_the_heads_tmp_ray(stack: str) -> None:
    """The autoscaler's monitor.log and events reach the head (dashboard, drivers) only when
    both containers mount one volume at /tmp/ray."""
    pod = _kuberay_head_pod(_raycluster(cached_run(stack))["spec"])
    tmp_ray = {
        c["name"]: next(m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp/ray")
        for c in [*pod["containers"], *pod.get("initContainers", [])]
        if any(m["mountPath"] == "/tmp/ray" for m in c.get("volumeMounts", []))
    }
    assert set(tmp_ray.values()) == {"ray-logs"}, tmp_ray
    assert {"ray-head", "autoscaler"} <= set(tmp_ray)
    names = [v["name"] for v in pod["volumes"]]
    assert len(names) == len(set(names)), names
    assert [v for v in pod["volumes"] if v["name"] == "ray-logs"] == [
        {"name": "ray-logs", "emptyDir": {}}
    ]


def _head(run: ProgramRun) -> dict[str, Any]:
    return _raycluster(run)["spec"]["headGroupSpec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_jupyter_is_a_native_sidecar_after_the_installer() -> None:
    """In the head's restartPolicy Never pod a regular container that ends (File > Shut Down,
    an OOM kill) stays down: KubeRay replaces the pod only when the Ray container ends. An init
    container with restartPolicy Always is restarted by the kubelet; it starts after the
    installer that provides JupyterLab, and before the Ray container."""
    head = _head(cached_run("dev"))
    assert [c["name"] for c in head["containers"]] == ["ray-head"]
    names = [c["name"] for c in head["initContainers"]]
    assert names[-2:] == ["install-shared-packages", "jupyter"], names
    jupyter = head["initContainers"][-1]
    assert jupyter["restartPolicy"] == "Always"
    # Only the sidecar restarts itself: the installer runs once, the pod stays Never.
    assert all("restartPolicy" not in c for c in head["initContainers"][:-1])
    assert head["restartPolicy"] == "Never"
    # No probe holds Ray back or takes the head out of its Service.
    assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(jupyter)


def _without_jupyter() -> dict[str, ProgramRun]:
    """prod, and the local stack with JupyterLab turned off (its stack file turns it on)."""
    local = copy.deepcopy(stack_config("local"))
    local["ray-platform:ray"].setdefault("jupyter", {})["enabled"] = False
    return {"prod": cached_run("prod"), "local": run_program("local", local)}


def test_no_sidecar_without_jupyter() -> None:
    for run in _without_jupyter().values():
        pod = _head(run)
        assert all("restartPolicy" not in c for c in pod.get("initContainers", []))


def test_notebooks_see_the_raylet_through_a_shared_pid_namespace() -> None:
    """Ray 2.60's driver finds the local raylet by scanning processes (services.find_node_ids):
    from Jupyter's own PID namespace `ray.init()` finds none. Shared only where Jupyter runs."""
    assert _head(cached_run("dev"))["shareProcessNamespace"] is True
    assert _head(cached_run("local"))["shareProcessNamespace"] is True
    for run in _without_jupyter().values():
        assert "shareProcessNamespace" not in _head(run)
    for group in _raycluster(cached_run("dev"))["spec"]["workerGroupSpecs"]:
        assert "shareProcessNamespace" not in group["template"]["spec"]


def test_jupyter_is_pointed_at_the_installers_real_virtualenv() -> None:
    """PYTHONPATH reaches the shared packages through the `site-packages` symlink; JupyterLab's
    assets are found only from the virtualenv's real path, which the container is given."""
    head = _head(cached_run("dev"))
    install, jupyter = head["initContainers"][-2:]
    target = next(e["value"] for e in install["env"] if e["name"] == "TARGET")
    env = {e["name"]: e.get("value") for e in jupyter["env"]}
    assert env["RAY_PLATFORM_JUPYTER_PREFIX"] == f"{target}/venv"
    assert env["PYTHONPATH"] == f"{target}/site-packages"


def _token_digest(run: ProgramRun) -> str | None:
    meta = _raycluster(run)["spec"]["headGroupSpec"]["template"].get("metadata") or {}
    return (meta.get("annotations") or {}).get("ray-platform/jupyter-token-digest")


def test_a_rotated_jupyter_token_makes_a_new_head_pod() -> None:
    """Jupyter Server reads its token once, at start: only a changed pod template (KubeRay
    then recreates the pods) revokes the old token. The template carries a slow digest of the
    token, never the token."""
    dev = cached_run("dev")
    digest = _token_digest(dev)
    assert digest is not None and len(digest) == 32
    assert TEST_SECRETS["ray-platform:jupyterToken"] not in json.dumps(_raycluster(dev))
    rotated = {**stack_config("dev"), "ray-platform:jupyterToken": "another-token-0123456789ab"}
    new = _token_digest(run_program("dev", rotated))
    assert new is not None and new != digest
    # Not a plain hash of the token anyone who may read pods could test guesses against.
    token = TEST_SECRETS["ray-platform:jupyterToken"].encode()
    assert digest not in (hashlib.sha256(token).hexdigest()[:32], hashlib.md5(token).hexdigest())
    # Only where Jupyter runs.
    assert _token_digest(cached_run("local")) is not None
    for run in _without_jupyter().values():
        assert _token_digest(run) is None
