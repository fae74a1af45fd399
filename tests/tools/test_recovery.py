"""One main job at a time, and what a killed run leaves (tools/devcluster/recovery.py). The engine
side (a `pulumi up` killed mid-run, then `tools/up`) is proven in tests/e2e/test_faults.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.devcluster import recovery, stack


def _hold(
    state: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    with recovery.one_run(Path(state), "up"):
        ready.set()
        done.wait(30)


def test_a_second_run_on_the_same_state_is_refused_in_one_line(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, done))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(recovery.Busy) as refused, recovery.one_run(tmp_path, "destroy"):
            pytest.fail("two runs held one state directory")
        message = str(refused.value)
        assert "\n" not in message
        assert f"pid {holder.pid}: up" in message and str(tmp_path) in message
    finally:
        done.set()
        holder.join(10)
    # Released when the holder ends, however it ends.
    with recovery.one_run(tmp_path, "up"):
        pass


def test_the_main_job_refuses_while_another_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), ready, done))
    holder.start()
    try:
        assert ready.wait(10)
        assert stack.main(["up", "--state", str(tmp_path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another `tools/up` is running" in err[0]
    finally:
        done.set()
        holder.join(10)


def test_a_killed_holder_releases_the_state(tmp_path: Path) -> None:
    code = (
        "import sys, os, time; from pathlib import Path\n"
        "from tools.devcluster import recovery\n"
        "with recovery.one_run(Path(sys.argv[1]), 'up'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(recovery.Busy), recovery.one_run(tmp_path, "up"):
        pass
    proc.kill()
    proc.wait(10)
    with recovery.one_run(tmp_path, "up"):
        pass


def _lock(state: Path, pid: int, host: str) -> Path:
    path = state / ".pulumi/locks/organization/ray-platform/local/abc.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": pid, "hostname": host, "timestamp": "2026-12-04T10:00:00Z"}))
    return path


def test_a_lock_of_a_dead_pulumi_here_is_stale(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    _lock(tmp_path, dead.pid, socket.gethostname())
    [lock] = recovery.engine_locks(tmp_path, "local")
    assert recovery.is_stale(lock)
    assert recovery.engine_locks(tmp_path, "other") == []


def test_a_lock_of_a_live_pulumi_or_another_host_is_not_stale(tmp_path: Path) -> None:
    # This process is not `pulumi`: a reused pid counts as dead ...
    _lock(tmp_path, os.getpid(), socket.gethostname())
    [mine] = recovery.engine_locks(tmp_path, "local")
    assert recovery.is_stale(mine)
    # ... a lock written on another machine (a shared backend) never is.
    other = recovery.EngineLock(mine.path, 1, "another-host", "")
    assert not recovery.is_stale(other)
    unreadable = recovery.EngineLock(mine.path, None, socket.gethostname(), "")
    assert not recovery.is_stale(unreadable)


def test_a_live_pulumi_holding_the_stack_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lock(tmp_path, 4242, socket.gethostname())
    monkeypatch.setattr(recovery, "_runs_pulumi", lambda pid: pid == 4242)
    [lock] = recovery.engine_locks(tmp_path, "local")
    assert not recovery.is_stale(lock)


def test_pending_operations_are_described_from_the_checkpoint() -> None:
    deployment = {
        "pending_operations": [
            {
                "type": "creating",
                "resource": {
                    "urn": "urn:pulumi:local::ray-platform::kubernetes:core/v1:Namespace::ray",
                    "type": "kubernetes:core/v1:Namespace",
                },
            }
        ]
    }
    assert recovery.pending_operations(deployment) == ["creating kubernetes:core/v1:Namespace ray"]
    assert recovery.pending_operations({}) == []


def test_the_objects_of_unfinished_creates_are_named_from_the_checkpoint() -> None:
    """Auto-named objects too: the name the provider gave is in the checked inputs (a dropped
    create would otherwise leave e.g. `shared-pv-1a2b3c` behind and the next up make another)."""

    def creating(kind: str, meta: dict[str, str]) -> dict[str, object]:
        urn = f"urn:pulumi:local::ray-platform::{kind}::x"
        return {
            "type": "creating",
            "resource": {"urn": urn, "type": kind, "inputs": {"metadata": meta}},
        }

    deployment = {
        "pending_operations": [
            creating("kubernetes:core/v1:PersistentVolume", {"name": "shared-pv-1a2b3c"}),
            creating("kubernetes:ray.io/v1:RayCluster", {"name": "ray", "namespace": "ray"}),
            creating("kubernetes:helm.sh/v3:Release", {"name": "kuberay"}),
            {"type": "updating", "resource": {"type": "kubernetes:core/v1:ConfigMap"}},
        ]
    }
    found = recovery.unfinished_creates(deployment)
    assert [(o.kubectl_resource, o.name, o.namespace) for o in found] == [
        ("persistentvolume", "shared-pv-1a2b3c", None),
        ("raycluster.v1.ray.io", "ray", "ray"),
    ]
    assert found[1].describe() == "RayCluster ray/ray"


def test_helm_releases_cut_short_have_their_pending_records_named() -> None:
    """A Helm install or upgrade killed mid-way leaves its revision's record pending-*: Helm
    then refuses every later install ("name still in use") or upgrade ("another operation is in
    progress"). Only v3 Releases of creates and updates; their records by Helm's labels."""

    def op(kind: str, typ: str, name: str) -> dict[str, object]:
        urn = f"urn:pulumi:local::ray-platform::{typ}::{name}"
        inputs = {"name": name, "namespace": "ray", "chart": "./c"}
        return {"type": kind, "resource": {"urn": urn, "type": typ, "inputs": inputs}}

    release = "kubernetes:helm.sh/v3:Release"
    deployment = {
        "pending_operations": [
            op("creating", release, "kuberay-crds"),
            op("updating", release, "kuberay-operator"),
            op("deleting", release, "gone"),  # an uninstall: the next destroy runs it again
            op("creating", "kubernetes:helm.sh/v4:Chart", "other"),
        ]
    }
    found = recovery.interrupted_releases(deployment)
    assert [(r.name, r.namespace, r.installing) for r in found] == [
        ("kuberay-crds", "ray", True),
        ("kuberay-operator", "ray", False),
    ]
    # An install Pulumi never recorded: every record (the kill may have come after Helm marked
    # it deployed or failed, which blocks an install as much as pending-install does).
    assert found[0].stale_records == "owner=helm,name=kuberay-crds"
    # An upgrade: only the pending ones; Helm upgrades from the last deployed revision.
    assert found[1].stale_records == (
        "owner=helm,name=kuberay-operator,"
        "status in (pending-install,pending-upgrade,pending-rollback)"
    )
    assert recovery.unfinished_creates(deployment) == []  # no release is deleted as an object


def test_ctrl_c_while_the_engine_runs_waits_for_it_then_says_so() -> None:
    import signal as sig

    # Python's own Ctrl-C handler, whatever this run inherited (a shell starting it in the
    # background leaves SIGINT ignored).
    inherited = sig.signal(sig.SIGINT, sig.default_int_handler)
    try:
        _ctrl_c_cases(sig)
    finally:
        sig.signal(sig.SIGINT, inherited)


def _ctrl_c_cases(sig: Any) -> None:
    finished = []
    with pytest.raises(recovery.Interrupted), recovery.engine_owns_ctrl_c():
        os.kill(os.getpid(), sig.SIGINT)  # no KeyboardInterrupt here: the engine's turn
        finished.append(True)
    assert finished == [True]
    # The engine's own error after a cancel is reported as the interrupt.
    with pytest.raises(recovery.Interrupted), recovery.engine_owns_ctrl_c():
        os.kill(os.getpid(), sig.SIGINT)
        raise RuntimeError("pulumi exited 255")
    # Without Ctrl-C nothing changes, and the default handler is back.
    with recovery.engine_owns_ctrl_c():
        pass
    assert sig.getsignal(sig.SIGINT) is sig.default_int_handler


def test_a_retained_volume_of_a_deleted_claim_is_made_bindable_again_and_only_that() -> None:
    """Deleting the claim a killed run was creating leaves its volume Released, naming the dead
    claim's uid: the next up's claim of the same name would never bind. Read from the volume
    alone, so a recovery killed between the delete and the patch can run again."""
    ref = {"namespace": "ray", "name": "ray-shared", "uid": "u1", "resourceVersion": "7"}
    released = {"spec": {"persistentVolumeReclaimPolicy": "Retain", "claimRef": ref}}
    assert recovery.reopen_retained_volume(released, "ray", "ray-shared") == [
        {"op": "test", "path": "/spec/claimRef/uid", "value": "u1"},
        {"op": "remove", "path": "/spec/claimRef/uid"},
        {"op": "remove", "path": "/spec/claimRef/resourceVersion"},
    ]
    # Another claim's, already bindable (no uid), or a volume whose reclaim would delete the
    # data: untouched.
    assert recovery.reopen_retained_volume(released, "ray", "other") is None
    assert recovery.reopen_retained_volume(released, "other", "ray-shared") is None
    prebound = {
        "spec": {**released["spec"], "claimRef": {"namespace": "ray", "name": "ray-shared"}}
    }
    assert recovery.reopen_retained_volume(prebound, "ray", "ray-shared") is None
    deleting = {"spec": {**released["spec"], "persistentVolumeReclaimPolicy": "Delete"}}
    assert recovery.reopen_retained_volume(deleting, "ray", "ray-shared") is None
    assert recovery.reopen_retained_volume({"spec": {}}, "ray", "ray-shared") is None


def test_an_unfinished_claim_names_its_volume_from_the_checkpoint() -> None:
    """The volume is found even when the claim is already gone (a second recovery)."""
    urn = "urn:pulumi:local::ray-platform::kubernetes:core/v1:PersistentVolumeClaim::shared-pvc"
    inputs = {
        "metadata": {"name": "ray-shared", "namespace": "ray"},
        "spec": {"volumeName": "shared-pv-1a2b"},
    }
    resource = {"urn": urn, "type": "kubernetes:core/v1:PersistentVolumeClaim", "inputs": inputs}
    (found,) = recovery.unfinished_creates(
        {"pending_operations": [{"type": "creating", "resource": resource}]}
    )
    assert (found.name, found.namespace, found.volume) == ("ray-shared", "ray", "shared-pv-1a2b")


def test_volumes_an_interrupted_run_never_recorded_are_found_and_only_those() -> None:
    """A Ctrl-C cancels a PV create whose request reached the API server: the engine records it
    failed, and the auto-named volume would sit beside the next up's (found by the faults tier)."""

    def pv(name: str, stack: str = "local", **extra: Any) -> dict[str, Any]:
        labels = {"app.kubernetes.io/managed-by": "pulumi", "ray-platform/stack": stack}
        meta = {"name": name, "labels": labels, **extra.pop("meta", {})}
        return {"metadata": meta, "spec": {"hostPath": {"path": "/srv"}, **extra}}

    deployment = {
        "resources": [{"type": "kubernetes:core/v1:PersistentVolume", "id": "shared-pv-known"}]
    }
    volumes = [
        pv("shared-pv-known"),  # the state's own (not yet bound)
        pv("shared-pv-orphan"),  # made, never recorded, never bound: no claimRef at all
        pv("shared-pv-reopened", claimRef={"namespace": "ray", "name": "ray-shared"}),
        pv("shared-pv-bound", claimRef={"namespace": "ray", "name": "ray-shared", "uid": "u"}),
        pv("shared-pv-other", stack="local-prod"),  # the other stack's, which shares the cluster
        pv("shared-pv-going", meta={"deletionTimestamp": "2026-12-04T00:00:00Z"}),
        {"metadata": {"name": "someone-elses", "labels": {}}, "spec": {}},
    ]
    found = recovery.orphaned_volumes(volumes, deployment, "local")
    assert [v["metadata"]["name"] for v in found] == ["shared-pv-orphan", "shared-pv-reopened"]


def test_attribute_sidecars_a_kill_tore_are_found_and_only_those(tmp_path: Path) -> None:
    """A hard kill while gocloud's file blob wrote `local.json.attrs` (in place, not renamed)
    left it empty: every later command failed with "failed to load checkpoint: EOF"."""
    stacks = tmp_path / ".pulumi" / "stacks" / "ray-platform"
    stacks.mkdir(parents=True)
    (stacks / "local.json").write_text("{}")
    (stacks / "local.json.attrs").write_text("")
    (stacks / "local.json.bak.attrs").write_text('{"user.content_type":"application/json"}')
    (tmp_path / ".pulumi" / "meta.yaml.attrs").write_text('{"user.me')
    assert recovery.torn_sidecars(tmp_path) == [
        tmp_path / ".pulumi" / "meta.yaml.attrs",
        stacks / "local.json.attrs",
    ]
