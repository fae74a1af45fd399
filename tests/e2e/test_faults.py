"""Faults on the real node (tier `faults`): what a data scientist's bad day does to the platform.

Each test breaks one real piece while Ray works, then checks what the user is told, what
survived and that the platform recovers by itself (or with the next `tools/up`). Nothing is
mocked: the pods, kubelet, containerd, the KubeRay operator, the engine and its file backend
are the real ones the main job runs. The README's "Faults survived" table lists these tests.

Needs root, like the node tier, and the node to itself: this module brings its own node up and
takes it down at the end.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from components.kuberay.raycluster_spec import PACKAGES_SUBDIR
from tests.e2e.mainjob import job, ok, start
from tests.e2e.node_cluster import (
    CLUSTER,
    NS,
    Deployment,
    deployed,
    exec_in,
    head,
    in_head,
    kubectl,
    pods,
    port_forward,
    running,
    submit,
    submit_command,
)
from tools.devcluster import localcluster, objectstore, readiness, recovery

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

RECOVERY_TIMEOUT = 900.0
"""Seconds the RayCluster gets to be ready again after a fault (a new head installs nothing:
the shared packages are on the shared file system already)."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert os.geteuid() == 0, "the faults tier needs root (CI runs as root)"
    with deployed(tmp_path_factory.mktemp("faults")) as d:
        yield d


def wait_ready(d: Deployment, timeout: float = RECOVERY_TIMEOUT) -> float:
    """Until the head and the minimum worker are Running and Ready, as `tools/up` waits."""
    return readiness.wait(d.kubeconfig, NS, CLUSTER, {"cpu": 1}, timeout=timeout, say=print)


def snapshot(d: Deployment) -> dict[str, str]:
    """`<kind>/<name>` → uid of the RayCluster's pods and Services (a recreated one has a new
    uid) plus each container's restart count."""
    found: dict[str, str] = {}
    selector = f"labelSelector=ray.io/cluster={CLUSTER}"
    for kind in ("pods", "services"):
        for obj in d.kube.items(f"/api/v1/namespaces/{NS}/{kind}?{selector}"):
            if obj["metadata"].get("deletionTimestamp"):
                continue
            found[f"{kind}/{obj['metadata']['name']}"] = obj["metadata"]["uid"]
            for status in (obj.get("status") or {}).get("containerStatuses") or []:
                restarts = str(status.get("restartCount"))
                found[f"{kind}/{obj['metadata']['name']}/{status['name']}"] = restarts
    return found


class Output:
    """The lines a background process prints, collected by a thread (so waiting for a line
    never blocks on a process that prints nothing more)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line, re.IGNORECASE):
                    return line
            if self.proc.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-40:]))

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._thread.join(10)
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def start_submit(d: Deployment, workdir: Path, *argv: str) -> Output:
    command, env = submit_command(d, workdir, *argv)
    proc = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Output(proc)


def job_dir(tmp_path: Path, name: str, script: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "job.py").write_text(textwrap.dedent(script))
    return directory


def s3(d: Deployment) -> Any:
    store = localcluster.object_store(d.cluster)
    return objectstore.s3_client(store.endpoint, store.credentials, store.region)


# ----------------------------------------------------------------------------------------- tests


def test_a_second_up_while_one_runs_is_refused_in_one_line(deployment: Deployment) -> None:
    d = deployment
    first = start("up", d.state, d.cluster)
    try:
        lock = d.state / recovery.RUN_LOCK
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().startswith("pid ")):
            assert time.monotonic() < deadline, "the first run never took the state"
            time.sleep(0.1)
        second = job("up", d.state, d.cluster, timeout=120)
        errors = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert second.returncode == 1
        assert len(errors) == 1, second.stderr
        assert "another `tools/up` is running" in errors[0] and f"pid {first.pid}" in errors[0]
        assert second.stdout == ""  # refused before touching the cluster or the engine
    finally:
        out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-3000:]


def test_restarting_the_operator_recreates_nothing(deployment: Deployment) -> None:
    d = deployment
    before = snapshot(d)
    localcluster.restart([localcluster.OPERATOR], d.cluster)
    time.sleep(30)  # its first reconciles run at start
    wait_ready(d)
    assert snapshot(d) == before


def test_restarting_kubelet_and_containerd_keeps_the_pods_running(deployment: Deployment) -> None:
    d = deployment
    before = snapshot(d)
    localcluster.restart(["containerd", "kubelet"], d.cluster)
    wait_ready(d)
    time.sleep(20)  # a pod kubelet no longer recognised would be killed by now
    wait_ready(d)
    assert snapshot(d) == before  # same pods, no container restarted
    assert "42" in in_head(
        d, "import ray; ray.init(); print(ray.get(ray.remote(lambda: 42).remote()))"
    )


WORK_ON_A_WORKER = """
import os, socket, time
import ray
ray.init()

@ray.remote(num_cpus=1, max_retries=3)
def work():
    # Where each attempt runs, on the shared file system, for the test to see.
    with open("/mnt/shared/faults-attempts.txt", "a") as f:
        f.write(socket.gethostname() + "\\n")
    time.sleep(45)
    return socket.gethostname()

ref = work.remote()
print("started", flush=True)
print("done on", ray.get(ref), flush=True)
"""


def test_a_worker_deleted_mid_task_is_replaced_and_the_task_retried(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    attempts = localcluster.shared_dir(d.cluster) / "faults-attempts.txt"
    attempts.unlink(missing_ok=True)
    run = start_submit(d, job_dir(tmp_path, "work", WORK_ON_A_WORKER), "python", "job.py")
    deadline = time.monotonic() + 600
    while not (attempts.exists() and attempts.read_text().strip()):
        assert time.monotonic() < deadline and run.proc.poll() is None, run.text[-3000:]
        time.sleep(0.5)
    worker = attempts.read_text().split()[0]  # the pod running the task's first attempt
    deleted = kubectl(d, "-n", NS, "delete", "pod", worker, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    code = run.finish(timeout=900)
    assert code == 0, run.text[-3000:]
    host = run.text.split("done on", 1)[1].split()[0]
    assert host.startswith("ray-cpu-worker-") and host != worker
    tried = attempts.read_text().split()
    assert tried[0] == worker and tried[-1] == host and len(tried) >= 2, tried  # retried
    wait_ready(d)
    assert worker not in running(d, "worker")


LOAD_JOBS = 20


def test_twenty_concurrent_submits_all_finish_each_zip_uploaded_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    """20 submits of one directory, then of 20 directories, all at once from the host: every
    job prints its own output, each distinct zip is uploaded by exactly one submit, and the
    dashboard answers throughout. bench/load.py prints the same rounds' figures."""
    from bench import load

    d = deployment

    def command(directory: Path, entrypoint: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        return submit_command(d, directory, *entrypoint)

    token = kubectl(
        d, "-n", NS, "get", "secret", CLUSTER, "-o", "jsonpath={.data.auth_token}"
    ).stdout
    headers = {"Authorization": f"Bearer {base64.b64decode(token).decode()}"}
    with port_forward(d, 8265) as local:
        probe = load.DashboardProbe(f"http://127.0.0.1:{local}/api/version", headers)
        with probe:
            rounds = {
                same: load.run_round(
                    command, load.job_directories(tmp_path / str(same), LOAD_JOBS, same=same)
                )
                for same in (True, False)
            }
    for same, results in rounds.items():
        print("same directory" if same else "distinct directories", load.summary(results))
        for r in results:
            assert r.code == 0, "\n".join(r.stdout[-20:] + r.stderr[-20:])
            tag = "same" if same else f"distinct-{r.index:02d}"
            assert f"tag {tag} job {r.index}" in r.stdout, r.stdout[-20:]
        uploads = sum(r.uploaded for r in results)
        assert uploads == (1 if same else LOAD_JOBS), [r.stderr[:6] for r in results]
    assert probe.ok > 0 and probe.failures == [], probe.failures[:5]


SPILL = """
import glob, re, time
import ray
from ray._private.internal_api import memory_summary

ray.init()
head = next(n for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
capacity = head["Resources"]["object_store_memory"]
chunk = 64 * 2**20
count = int(capacity * 1.5 // chunk) + 1
refs = [ray.put(bytes([i % 256]) * chunk) for i in range(count)]
print("object store", capacity // 2**20, "MiB; put", count * chunk // 2**20, "MiB", flush=True)
spilled = 0
for _ in range(60):  # the raylet spills asynchronously
    found = re.search(r"Spilled (\\d+) MiB", memory_summary(stats_only=True))
    spilled = int(found.group(1)) if found else 0
    if spilled:
        break
    time.sleep(1)
dirs = sorted(glob.glob("/tmp/ray/session_*/ray_spilled_objects*"))
print("spilled MiB", spilled, "into", dirs[:1], flush=True)
print("read back", all(ray.get(r)[-1] == i % 256 for i, r in enumerate(refs)), flush=True)
"""


def test_a_job_that_overfills_the_object_store_spills_and_completes(
    deployment: Deployment, tmp_path: Path
) -> None:
    """1.5 times the head's object store put from the driver: Ray spills to disk under
    /tmp/ray (the pod's ray-logs emptyDir, as the README says) and reads every object back."""
    d = deployment
    run = submit(d, job_dir(tmp_path, "spill", SPILL), "python", "job.py")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(run.stdout)
    assert "read back True" in run.stdout
    spilled = run.stdout.split("spilled MiB ", 1)[1].splitlines()[0]
    mib, where = spilled.split(" into ", 1)
    assert int(mib) > 0, run.stdout  # Ray itself reports the spill
    assert "'/tmp/ray/session_" in where and "ray_spilled_objects" in where, where


def test_deleting_the_head_while_a_job_runs_fails_the_submit_clearly_and_loses_no_data(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    worker = running(d, "worker")[0]
    exec_in(d, worker, "ray-worker", "sh", "-c", "echo written-before > /mnt/shared/before.txt")
    bucket = s3(d)
    bucket.put_object(Bucket="ray", Key="local/before.txt", Body=b"written-before")
    long_job = job_dir(
        tmp_path, "long", 'import time\nprint("working", flush=True)\ntime.sleep(900)\n'
    )
    run = start_submit(d, long_job, "python", "job.py")
    run.wait_for(r"^working", timeout=600)
    old_head = head(d)
    deleted = kubectl(d, "-n", NS, "delete", "pod", old_head, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    began = time.monotonic()
    code = run.finish(timeout=300)  # never hangs on a lost cluster
    print(f"submit exited {code} {time.monotonic() - began:.0f}s after the head was deleted")
    assert code in (1, 6), run.text[-3000:]  # the job failed, or the dashboard was lost
    last = run.lines[-1]
    assert last.startswith("ray-platform submit: "), run.text[-3000:]
    assert "Traceback" not in run.text, run.text[-3000:]

    wait_ready(d)
    assert head(d) != old_head  # KubeRay made a new head
    _wait_ray_workers(d)
    assert "written-before" in in_head(d, "print(open('/mnt/shared/before.txt').read())")
    body = bucket.get_object(Bucket="ray", Key="local/before.txt")["Body"].read()
    assert body == b"written-before"
    # The Ray token survived the head: the next submit is admitted and runs.
    again = job_dir(tmp_path, "again", 'print("after the fault")\n')
    after = submit(d, again, "python", "job.py")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "after the fault" in after.stdout


def _installer_fault(d: Deployment, mount_options: str, reason: str) -> None:
    """With the shared packages' directory replaced by an empty tmpfs mounted with
    `mount_options`, a new head's installer fails with `reason` in one line, retries in place
    with backoff (the same head pod throughout, no restart), and the cluster is ready again once
    the directory is back."""
    shared = localcluster.shared_dir(d.cluster)
    packages, aside = shared / PACKAGES_SUBDIR, shared / f"{PACKAGES_SUBDIR}.aside"
    packages.rename(aside)
    packages.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", mount_options, "tmpfs", str(packages)], check=True
    )
    try:
        _delete_heads(d, wait=True)
        with pytest.raises(readiness.NotReady) as failed:
            wait_ready(d, timeout=300)
        message = str(failed.value)
        print(message)
        assert "\n" not in message
        assert reason in message, message
        heads = pods(d, "head")
        assert len(heads) == 1, [p["metadata"]["name"] for p in heads]  # not replaced
        statuses = heads[0]["status"].get("initContainerStatuses") or []
        assert all(s.get("restartCount", 0) == 0 for s in statuses), statuses  # retried in place
    finally:
        subprocess.run(["umount", "-l", str(packages)], check=False)
        packages.rmdir()
        aside.rename(packages)
    _delete_heads(d, wait=False)  # stuck in its installer's backoff: a new one finds the packages
    wait_ready(d)


def _delete_heads(d: Deployment, *, wait: bool) -> None:
    """Delete the head pod whatever its phase (one waiting in its installer is not Running)."""
    selector = f"ray.io/cluster={CLUSTER},ray.io/node-type=head"
    deleted = kubectl(d, "-n", NS, "delete", "pod", "-l", selector, f"--wait={str(wait).lower()}")
    assert deleted.returncode == 0, deleted.stderr


def _wait_ray_workers(d: Deployment, timeout: float = 300) -> None:
    """Until a worker with CPUs has joined the head's GCS (a worker of the old head restarts
    its raylet once it gives up on the old GCS)."""
    script = (
        "import ray; ray.init(); "
        "print('cpus', sum(n['Resources'].get('CPU', 0) for n in ray.nodes() if n['Alive']))"
    )
    deadline = time.monotonic() + timeout
    while True:
        out = in_head(d, script)
        if float(out.split("cpus", 1)[1].split()[0]) >= 1:
            return
        assert time.monotonic() < deadline, out
        time.sleep(5)


def test_a_full_shared_file_system_fails_the_install_clearly_and_the_head_does_not_spin(
    deployment: Deployment,
) -> None:
    _installer_fault(deployment, "size=1m,uid=1000,gid=100,mode=2775", "No space left on device")


def test_a_read_only_shared_file_system_fails_the_install_clearly(deployment: Deployment) -> None:
    _installer_fault(deployment, "ro,size=1m,uid=1000,gid=100,mode=2775", "Read-only file system")


def _state_files(state: Path) -> list[Path]:
    """The stack's checkpoint and its backup (not gocloud's `.attrs` sidecars)."""
    stacks = state / ".pulumi" / "stacks"
    return sorted([*stacks.glob("*/local.json"), *stacks.glob("*/local.json.bak")])


def _managed_objects(d: Deployment) -> set[str]:
    """`<namespace>/<name>` (or `<name>`) of the objects this program labels as its own that no
    other object owns (KubeRay's children carry their RayCluster's labels but an owner)."""
    selector = "labelSelector=app.kubernetes.io/managed-by=pulumi"
    paths = [
        "/api/v1/namespaces",
        "/api/v1/serviceaccounts",
        "/api/v1/configmaps",
        "/api/v1/secrets",
        "/api/v1/persistentvolumeclaims",
        "/api/v1/persistentvolumes",
        "/apis/networking.k8s.io/v1/networkpolicies",
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "/apis/batch/v1/jobs",
        "/apis/ray.io/v1/rayclusters",
    ]
    found = set()
    for path in paths:
        for obj in d.kube.items(f"{path}?{selector}"):
            meta = obj["metadata"]
            if meta.get("ownerReferences") or meta.get("deletionTimestamp"):
                continue
            ns = meta.get("namespace")
            found.add(f"{ns}/{meta['name']}" if ns else meta["name"])
    return found


SLOW_CREATES = (
    "kubernetes:helm.sh/v3:Release",  # Helm waits for each CRD to be Established
    "kubernetes:batch/v1:Job",  # the shared directory's owner Job: a pod on the node
    "kubernetes:core/v1:PersistentVolumeClaim",  # waits to be Bound
)
"""Creates that last seconds: the moment one is pending in the checkpoint, the engine is still
running with it in flight. (A fixed sleep after the first "creating" line stopped working once
an up took ~10 s: the run could be over before the signal.)"""


def _in_flight(state: Path) -> list[str]:
    """Types of the slow creates the checkpoint on disk lists as pending (the engine records an
    operation there before it starts it, and writes the file with a rename)."""
    try:
        (checkpoint,) = (state / ".pulumi" / "stacks").glob("*/local.json")
        latest = json.loads(checkpoint.read_text())["checkpoint"].get("latest") or {}
    except (ValueError, OSError, KeyError):
        return []
    ops = latest.get("pending_operations") or []
    return [str(op["resource"]["type"]) for op in ops if op["resource"]["type"] in SLOW_CREATES]


def _interrupt(d: Deployment, sig: signal.Signals) -> str:
    """Start `up`, and while the engine has a slow create in flight, send `sig` to the whole
    run."""
    run = Output(start("up", d.state, d.cluster))
    deadline = time.monotonic() + 600
    while not _in_flight(d.state):
        assert run.proc.poll() is None, f"up ended before a slow create:\n{run.text[-3000:]}"
        assert time.monotonic() < deadline, run.text[-3000:]
        time.sleep(0.05)
    os.killpg(run.proc.pid, sig)
    if sig == signal.SIGINT:
        code = run.finish(timeout=600)
        assert code == 130, run.text[-2000:]
        assert "interrupted: pulumi up stopped after the operations in flight" in run.text
    else:
        # The engine starts its plugins (the language host, the provider) in process groups of
        # their own, in the run's session: a hard kill (a CI timeout, an OOM kill of the box)
        # takes them all.
        for path in Path("/proc").glob("[0-9]*"):
            try:
                if os.getsid(int(path.name)) == run.proc.pid:
                    os.kill(int(path.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        run.finish(timeout=60)
    return run.text


def test_a_killed_up_is_taken_up_by_the_next_one_with_nothing_orphaned(
    deployment: Deployment,
) -> None:
    d = deployment
    ok(job("destroy", d.state, d.cluster))
    # Ctrl-C: the engine stops after the operations in flight and says so, and leaves neither its
    # lock nor an operation in flight (nothing for the next run to recover).
    _interrupt(d, signal.SIGINT)
    assert recovery.engine_locks(d.state, "local") == []
    (checkpoint,) = (d.state / ".pulumi" / "stacks").glob("*/local.json")
    latest = json.loads(checkpoint.read_text())["checkpoint"].get("latest") or {}
    assert not latest.get("pending_operations"), latest.get("pending_operations")
    # Then a hard kill in the middle of creating: the engine's lock and its operations in flight
    # stay in the file backend. From an empty stack again, so it has slow creates to cut short.
    cleaned = ok(job("destroy", d.state, d.cluster))
    assert "was killed" not in cleaned.stderr and "in flight" not in cleaned.stderr
    _interrupt(d, signal.SIGKILL)
    checkpoints = [json.loads(p.read_text()) for p in _state_files(d.state)]  # never torn
    # Nor a sidecar: written in place, an `.attrs` a kill tore failed every later command.
    assert not list((d.state / ".pulumi").rglob("*.attrs"))
    assert recovery.engine_locks(d.state, "local"), "the hard kill left no lock to recover"
    assert checkpoints, "no checkpoint found"
    latest = checkpoints[0]["checkpoint"].get("latest") or {}  # local.json sorts before .bak
    pending = latest.get("pending_operations") or []
    assert pending, "the hard kill left no operation in flight: the test proved nothing"

    # Volumes no state knows, as a Ctrl-C'd create leaves them: this stack's never-bound one
    # goes, the other stack's (they share the cluster) stays.
    for name, owner in (("shared-pv-stray", "local"), ("shared-pv-theirs", "local-prod")):
        d.kube.apply(_unrecorded_volume(name, owner))
    run = ok(job("up", d.state, d.cluster))
    said = run.stderr
    assert "was killed" in said and "releasing its lock" in said, said[-3000:]
    assert "operation(s) in flight" in said, said[-3000:]
    assert "deleted PersistentVolume shared-pv-stray" in said, said[-3000:]
    d.kube.wait("the stray volume gone", lambda: _volume(d, "shared-pv-stray") is None, 60)
    assert _volume(d, "shared-pv-theirs") is not None, "the other stack's volume was deleted"
    d.kube.delete(_unrecorded_volume("shared-pv-theirs", "local-prod"))
    d.kube.wait("its volume gone", lambda: _volume(d, "shared-pv-theirs") is None, 60)
    exported = subprocess.run(
        ["pulumi", "stack", "export", "--stack", "local"],
        cwd=d.state / "project",
        env={**os.environ, **_engine_env(d)},
        capture_output=True,
        text=True,
        check=True,
    )
    deployment_state = json.loads(exported.stdout)["deployment"]
    assert not deployment_state.get("pending_operations")
    ids = {
        r.get("id", "")
        for r in deployment_state["resources"]
        if str(r.get("type", "")).startswith("kubernetes:")
    }
    orphans = _managed_objects(d) - ids
    assert orphans == set(), f"in the cluster, labelled as ours, not in the state: {orphans}"
    wait_ready(d)


def _unrecorded_volume(name: str, stack: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "pulumi", "ray-platform/stack": stack}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": f"/nonexistent/{name}"},
        },
    }


def _volume(d: Deployment, name: str) -> dict[str, Any] | None:
    found = d.kube.get(f"/api/v1/persistentvolumes/{name}")
    return None if found is None or found["metadata"].get("deletionTimestamp") else found


def _engine_env(d: Deployment) -> dict[str, str]:
    from tools.devcluster import engine

    eng = engine.engine(d.state, d.kubeconfig)
    return dict(eng.env)
