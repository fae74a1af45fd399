"""End to end on a real node: `tools/up` from nothing ends with Ray running here, every dev-loop
path works on it, and `destroy` + `down` leave the machine as it was.

Needs root (kubelet, containerd, a bridge, iptables): CI runs as root. Not root is a failure,
never a skip: this tier is the proof that the platform runs at all.

One node per machine (one bridge, kubelet's port), so the whole module shares one deployment,
made by the main job exactly as a user runs it (`python -m tools.devcluster.stack up`, its own
process, no KUBECONFIG). The last test takes it down and checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mainjob import job, ok
from tests.e2e.node_cluster import (
    CLUSTER,
    NS,
    Deployment,
    assert_unchanged,
    command,
    deployed,
    exec_in,
    head,
    in_head,
    pods,
    port_forward,
    running,
    submit,
)
from tools.devcluster import engine, localcluster
from tools.devcluster.localcluster import node

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert os.geteuid() == 0, "the node tier needs root (CI runs as root)"
    with deployed(tmp_path_factory.mktemp("node")) as d:
        yield d


# ----------------------------------------------------------------------------------------- tests


def test_up_ends_with_ray_running_and_a_second_up_changes_nothing(deployment: Deployment) -> None:
    d = deployment
    assert running(d, "head")
    assert len(running(d, "worker")) >= 1
    raycluster = d.kube.get(f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/{CLUSTER}")
    assert raycluster is not None and raycluster["status"].get("state") == "ready"
    head_uid = [p["metadata"]["uid"] for p in pods(d, "head")]
    again = ok(job("up", d.state, d.cluster))
    summary = again.stdout[again.stdout.rfind("Resources:") :]
    assert "unchanged" in summary and not re.search(
        r"\d+ (to )?(create|update|delete|replace)", summary
    ), summary
    assert [p["metadata"]["uid"] for p in pods(d, "head")] == head_uid


def test_the_printed_kubectl_commands_work_as_printed(deployment: Deployment) -> None:
    """After `eval "$(tools/up env)"` the outputs' commands run as printed (the project's kubectl
    on PATH, the local cluster's kubeconfig)."""
    d = deployment
    env_line = ok(job("env", d.state, d.cluster)).stdout
    head_pod = d.outputs["headShellCommand"].split("exec -it ", 1)[1].split(" -c ray-head")[0]
    for printed in (d.outputs["authTokenCommand"], f"echo {head_pod}"):
        run = subprocess.run(
            ["bash", "-c", f"{env_line}\n{printed}"],
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0 and run.stdout.strip(), run.stderr
    assert "pod/ray-head-" in run.stdout


def test_pods_reach_the_api_server_dns_and_the_node_services_but_nothing_else(
    deployment: Deployment,
) -> None:
    d = deployment
    script = textwrap.dedent(
        """
        import socket, urllib.request, urllib.error
        print("dns", socket.gethostbyname("kubernetes.default.svc.cluster.local"))
        s = socket.create_connection(("kubernetes.default.svc", 443), timeout=5); s.close()
        print("api ok")
        try:
            socket.create_connection(("pypi.org", 443), timeout=5)
            print("outside reachable")
        except OSError as e:
            print("outside unreachable", type(e).__name__)
        """
    )
    out = in_head(d, script)
    assert "dns 10.96.0.1" in out
    assert "api ok" in out
    assert "outside unreachable" in out


OUTSIDE_NS = "rp-e2e-outside"
OUTSIDE_HOST_IP, OUTSIDE_IP = "10.250.0.1", "10.250.0.2"


@contextlib.contextmanager
def outside_host() -> Iterator[int]:
    """A host of our own beside the node, not on its bridge: a network namespace behind a veth,
    routing the pod and Service ranges through this machine, with an HTTP server on it."""
    ns = ["ip", "netns", "exec", OUTSIDE_NS]
    steps = [
        ["ip", "netns", "add", OUTSIDE_NS],
        ["ip", "link", "add", "rpe2e0", "type", "veth", "peer", "name", "rpe2e1"],
        ["ip", "link", "set", "rpe2e1", "netns", OUTSIDE_NS],
        ["ip", "addr", "add", f"{OUTSIDE_HOST_IP}/30", "dev", "rpe2e0"],
        ["ip", "link", "set", "rpe2e0", "up"],
        [*ns, "ip", "addr", "add", f"{OUTSIDE_IP}/30", "dev", "rpe2e1"],
        [*ns, "ip", "link", "set", "rpe2e1", "up"],
        [*ns, "ip", "link", "set", "lo", "up"],
        [*ns, "ip", "route", "add", node.POD_CIDR, "via", OUTSIDE_HOST_IP],
        [*ns, "ip", "route", "add", "10.96.0.0/16", "via", OUTSIDE_HOST_IP],
    ]
    server = None
    # `ip netns add` makes /run/netns a mount of its own: the test takes back what it made.
    had_netns_dir = os.path.lexists("/run/netns")
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        port = 18080
        server = subprocess.Popen(
            [*ns, sys.executable, "-m", "http.server", str(port), "--bind", OUTSIDE_IP],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection((OUTSIDE_IP, port), timeout=1).close()
                break
            time.sleep(0.2)
        yield port
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "delete", OUTSIDE_NS], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", "rpe2e0"], capture_output=True, check=False)
        if not had_netns_dir:
            subprocess.run(["umount", "/run/netns"], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                os.rmdir("/run/netns")


def test_nothing_crosses_between_the_pod_network_and_other_interfaces(
    deployment: Deployment,
) -> None:
    """The fence: a pod cannot reach a host beside the node, and that host cannot reach the pod
    network, the Services or the bridge's address (MinIO, the API server), although it routes
    them through this machine and forwarding is on (the CNI plugin turns it on)."""
    d = deployment
    minio_port = int(d.outputs["objectStoreEndpoint"].rsplit(":", 1)[1])
    with outside_host() as port:
        # It answers this machine: it is up, and the route to it exists.
        urllib.request.urlopen(f"http://{OUTSIDE_IP}:{port}/", timeout=5).close()
        script = textwrap.dedent(
            f"""
            import socket
            try:
                socket.create_connection(("{OUTSIDE_IP}", {port}), timeout=5)
                print("reached")
            except OSError as e:
                print("blocked", type(e).__name__)
            """
        )
        assert "blocked" in in_head(d, script)
        for target in (f"{node.NODE_IP}:{minio_port}", "10.96.0.1:443"):
            host, tport = target.split(":")
            probe = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    OUTSIDE_NS,
                    sys.executable,
                    "-c",
                    f"import socket; socket.create_connection(('{host}', {tport}), timeout=3)",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert probe.returncode != 0, f"{target} reachable from beside the node"


def test_the_bucket_endpoint_pods_get_is_on_the_node_network(deployment: Deployment) -> None:
    d = deployment
    assert d.outputs["objectStoreEndpoint"].startswith(f"http://{node.NODE_IP}:")
    script = textwrap.dedent(
        """
        import boto3, os
        s3 = boto3.client("s3")
        s3.put_object(Bucket="ray", Key="local/from-pod.txt", Body=b"pod")
        print(s3.get_object(Bucket="ray", Key="local/from-pod.txt")["Body"].read().decode())
        """
    )
    assert in_head(d, script).strip() == "pod"


def test_a_pod_installs_through_the_package_mirror_with_no_other_route(
    deployment: Deployment,
) -> None:
    d = deployment
    script = textwrap.dedent(
        """
        import os, subprocess, sys, tempfile
        index = os.environ["PIP_INDEX_URL"]
        print("index", index)
        out = tempfile.mkdtemp()
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", out,
                        "six==1.16.0"], check=True, capture_output=True)
        print("got", os.listdir(out))
        """
    )
    out = in_head(d, script)
    assert f"index http://{node.NODE_IP}:" in out
    assert "six-1.16.0" in out


def test_shared_packages_install_only_what_the_image_lacks_and_workers_import_them(
    deployment: Deployment,
) -> None:
    d = deployment
    script = textwrap.dedent(
        """
        import glob, os, ray, tabulate
        print("tabulate", tabulate.__file__)
        site = os.path.dirname(os.path.dirname(tabulate.__file__))
        print("installed", sorted(n.split("-")[0].lower() for n in os.listdir(site)
                                  if n.endswith(".dist-info")))
        print("ray", ray.__file__)
        ray.init()

        @ray.remote(num_cpus=1)
        def where():
            import socket, tabulate
            return socket.gethostname(), tabulate.__version__

        print("task", ray.get(where.remote()))
        """
    )
    out = in_head(d, script)
    assert "/mnt/shared/" in out.split("tabulate", 1)[1].splitlines()[0]
    installed = out.split("installed ", 1)[1].splitlines()[0]
    assert "tabulate" in installed and "ray" not in installed.replace("'", " ").split()
    assert "/home/ray/anaconda3/" in out.split("ray ", 1)[1].splitlines()[0]
    assert "0.9.0" in out.split("task", 1)[1]


def test_inside_the_ray_containers_pod_security_restricted_holds(deployment: Deployment) -> None:
    d = deployment
    status = in_head(d, "print(open('/proc/self/status').read())")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["1000", "1000"]
    assert int(fields["CapEff"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # filter mode (RuntimeDefault)
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": NS},
        "spec": {
            "containers": [
                {
                    "name": "x",
                    "image": "registry.k8s.io/pause:3.10",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    with pytest.raises(RuntimeError, match=r"forbidden|violates PodSecurity"):
        d.kube.apply(privileged)


PROBE_PORTS = """
import socket, sys
# The positive control: the pod's network works (the API server through its Service).
socket.create_connection(("kubernetes.default.svc", 443), timeout=5).close()
print("api open")
for port in (6379, 8265):
    try:
        socket.create_connection((sys.argv[1], port), timeout=5).close()
        print(port, "open")
    except OSError as e:
        print(port, "closed", type(e).__name__)
"""


def test_the_network_policy_is_enforced_outsiders_cannot_reach_gcs_or_the_dashboard(
    deployment: Deployment,
) -> None:
    """kube-router enforces the RayCluster's NetworkPolicy on the node: a pod of another
    namespace cannot open the GCS or dashboard port of the head, a worker of the cluster can
    (and the rest of this module shows everything Ray needs still works with it on)."""
    d = deployment
    head_pod = d.kube.get(f"/api/v1/namespaces/{NS}/pods/{head(d)}") or {}
    head_ip = head_pod["status"]["podIP"]
    image = head_pod["spec"]["containers"][0]["image"]
    assert "KUBE-ROUTER-FORWARD" in command("iptables", "-S")
    worker = running(d, "worker")[0]
    inside = exec_in(d, worker, "ray-worker", "python", "-c", PROBE_PORTS, head_ip)
    assert "6379 open" in inside and "8265 open" in inside, inside

    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rp-e2e-netpol"}}
    outsider = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "outsider", "namespace": "rp-e2e-netpol"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "command": ["python", "-c", PROBE_PORTS, head_ip],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "128Mi"},
                        "limits": {"cpu": "50m", "memory": "128Mi"},
                    },
                }
            ],
        },
    }
    d.kube.apply(namespace)
    try:
        d.kube.apply(outsider)

        def finished() -> dict[str, Any] | None:
            found = d.kube.get("/api/v1/namespaces/rp-e2e-netpol/pods/outsider") or {}
            phase = found.get("status", {}).get("phase")
            return found if phase in ("Succeeded", "Failed") else None

        d.kube.wait("the outsider pod to finish", finished, timeout=180)
        logs = d.kube.text("/api/v1/namespaces/rp-e2e-netpol/pods/outsider/log") or ""
        assert "api open" in logs, logs  # its network works: the policy is what stops it
        assert "6379 closed" in logs and "8265 closed" in logs, logs
    finally:
        d.kube.delete(namespace)


def test_jupyter_through_the_port_forward_wants_the_token_and_runs_ray(
    deployment: Deployment,
) -> None:
    d = deployment
    token = (d.state / engine.JUPYTER_TOKEN_FILE).read_text().strip()
    with port_forward(d, 8888) as local:
        base = f"http://127.0.0.1:{local}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/kernels", timeout=30)
        assert refused.value.code == 403
        lab = urllib.request.urlopen(f"{base}/lab?token={token}", timeout=60).read().decode()
        assert "JupyterLab" in lab and "application assets not found" not in lab.lower()
        out = _run_in_kernel(
            base,
            token,
            "import ray; ray.init(); print(ray.get(ray.remote(lambda: 41 + 1).remote()))",
        )
        assert "42" in out


def _run_in_kernel(base: str, token: str, code: str) -> str:
    """Start a kernel through Jupyter's REST API and run `code` over its websocket."""
    import uuid

    from tornado import ioloop, websocket
    from tornado.httpclient import HTTPRequest

    headers = {"Authorization": f"token {token}"}
    request = urllib.request.Request(f"{base}/api/kernels", data=b"{}", headers=headers)
    kernel = json.loads(urllib.request.urlopen(request, timeout=60).read())
    ws_url = base.replace("http", "ws") + f"/api/kernels/{kernel['id']}/channels"

    async def run() -> str:
        conn = await websocket.websocket_connect(HTTPRequest(ws_url, headers=headers))
        msg_id = uuid.uuid4().hex
        conn.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": msg_id,
                        "username": "test",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False},
                    "channel": "shell",
                }
            )
        )
        printed = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            raw = await conn.read_message()
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            if msg["msg_type"] == "error":
                printed.append("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        conn.close()
        return "".join(printed)

    return str(ioloop.IOLoop.current().run_sync(run, timeout=300))


def test_submit_ships_a_directory_through_the_bucket_to_the_stacks_cluster(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    # Another pod (a worker) writes onto the shared file system; the job reads it.
    worker = running(d, "worker")[0]
    exec_in(d, worker, "ray-worker", "sh", "-c", "echo from-the-worker > /mnt/shared/e2e-input.txt")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "job.py").write_text(
        textwrap.dedent(
            """
            import ray
            ray.init()
            print("read:", open("/mnt/shared/e2e-input.txt").read().strip())

            @ray.remote(num_cpus=1)
            def upload():
                import boto3, socket
                boto3.client("s3").put_object(Bucket="ray", Key="local/e2e-result.txt",
                                              Body=socket.gethostname().encode())
                return socket.gethostname()

            print("uploaded from:", ray.get(upload.remote()))
            """
        )
    )
    (job_dir / "fail.py").write_text("raise SystemExit('this job fails')\n")
    run = submit(d, job_dir, "python", "job.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "read: from-the-worker" in run.stdout
    host = run.stdout.split("uploaded from:", 1)[1].split()[0]
    assert host.startswith("ray-cpu-worker-")
    # The zip went to the stack's bucket under its content hash, and the object is there.
    store = localcluster.object_store(d.cluster)
    from tools.devcluster import objectstore

    s3 = objectstore.s3_client(store.endpoint, store.credentials, store.region)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ray", Prefix="local/")["Contents"]]
    assert any(k.startswith("local/working_dirs/") and k.endswith(".zip") for k in keys), keys
    assert s3.get_object(Bucket="ray", Key="local/e2e-result.txt")["Body"].read().decode() == host
    failed = submit(d, job_dir, "python", "fail.py")
    assert failed.returncode == 1, failed.stdout + failed.stderr


def test_autoscaling_scales_up_and_down_and_a_later_up_still_applies(
    deployment: Deployment, tmp_path: Path
) -> None:
    """More work than the workers hold scales the group up; idle workers go; then a `pulumi up`
    that changes the RayCluster succeeds although the autoscaler owns workerGroupSpecs now."""
    d = deployment
    assert len(running(d, "worker")) == 1
    script = textwrap.dedent(
        """
        import ray, time
        ray.init()

        @ray.remote(num_cpus=1)
        def hold():
            import socket
            time.sleep(45)
            return socket.gethostname()

        print("hosts", sorted(set(ray.get([hold.remote() for _ in range(2)]))))
        """
    )
    out = in_head(d, script, timeout=600)
    hosts = out.split("hosts", 1)[1]
    assert hosts.count("ray-cpu-worker-") == 2, out  # a second worker came up for the work
    raycluster = d.kube.get(f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/{CLUSTER}")
    assert raycluster is not None
    idle = int(raycluster["spec"]["autoscalerOptions"].get("idleTimeoutSeconds", 60))
    deadline = time.monotonic() + idle + 240
    while len(running(d, "worker")) > 1 and time.monotonic() < deadline:
        time.sleep(5)
    assert len(running(d, "worker")) == 1, "the idle worker did not go away"
    # The autoscaler patched the replicas: a manager other than Pulumi owns workerGroupSpecs
    # (an atomic list), which an unforced apply would conflict with.
    latest = d.kube.get(f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/{CLUSTER}") or {}
    owners = {
        m.get("manager")
        for m in latest["metadata"].get("managedFields", [])
        if "f:workerGroupSpecs" in json.dumps(m.get("fieldsV1", {}))
    }
    assert any(not str(o).startswith("pulumi") for o in owners), owners
    # `tools/up` with nothing to change after the autoscaler's patches: no wait for a status
    # KubeRay never writes (it skips a status write when only observedGeneration would change).
    again = ok(job("up", d.state, d.cluster))
    assert "ready" in again.stderr
    head_uid = [p["metadata"]["uid"] for p in pods(d, "head")]
    # A `pulumi up` that changes the RayCluster (a new idle timeout) on the same state.
    from pulumi import automation as auto

    eng = engine.engine(d.state, d.kubeconfig)
    stack = engine.local_stack(eng, d.state / "project", "local")
    stack.set_config(
        "ray-platform:ray.idleTimeoutSeconds", auto.ConfigValue(str(idle + 30)), path=True
    )
    result = stack.up(color="never")
    assert result.summary.result == "succeeded"
    changed = d.kube.get(f"/apis/ray.io/v1/namespaces/{NS}/rayclusters/{CLUSTER}")
    assert changed is not None
    assert changed["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] == idle + 30
    from tools.devcluster import readiness

    # The change replaces the pods (KubeRay's Recreate): the next tests want them back.
    readiness.wait(d.kubeconfig, NS, CLUSTER, {"cpu": 1}, timeout=600, say=lambda _m: None)
    assert [p["metadata"]["uid"] for p in pods(d, "head")] != head_uid  # the new spec runs


KILL_JUPYTER = """
import os, signal
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    if b"jupyterlab" in argv[:4] and b"-c" not in argv[:2]:
        os.kill(int(pid), signal.SIGTERM)
        print("stopped", pid)
"""


def test_jupyter_comes_back_after_it_stops(deployment: Deployment) -> None:
    """Issue 14, item 4: JupyterLab is a native sidecar, so the kubelet restarts it (File > Shut
    Down, an OOM kill) while the head and Ray stay."""
    d = deployment
    pod = head(d)

    def jupyter_restarts() -> int:
        found = d.kube.get(f"/api/v1/namespaces/{NS}/pods/{pod}") or {}
        statuses = found.get("status", {}).get("initContainerStatuses") or []
        return sum(int(s.get("restartCount", 0)) for s in statuses if s["name"] == "jupyter")

    before = jupyter_restarts()
    stopped = exec_in(d, pod, "jupyter", "python", "-c", KILL_JUPYTER)
    assert "stopped" in stopped, "found no JupyterLab server process"
    deadline = time.monotonic() + 180
    while jupyter_restarts() == before and time.monotonic() < deadline:
        time.sleep(2)
    assert jupyter_restarts() > before, "the kubelet did not restart JupyterLab"
    assert head(d) == pod  # the head (and Ray) stayed


def test_the_autoscalers_logs_reach_the_head(deployment: Deployment) -> None:
    """Issue 14, item 19: the autoscaler sidecar writes into the head's /tmp/ray (KubeRay's
    `ray-logs` volume), so its monitor log is where the dashboard and drivers look."""
    found = in_head(
        deployment, "import glob; print(glob.glob('/tmp/ray/session_latest/logs/monitor*'))"
    )
    assert "monitor" in found, found


def test_a_failing_install_fails_up_with_pips_reason_and_the_head_is_not_recreated(
    deployment: Deployment,
) -> None:
    """Issue 14, items 7 and 20: a package set that cannot install retries in place (no new head
    every few seconds) and `up` says why in one line; the fixed set deploys again."""
    from pulumi import automation as auto

    from tools.devcluster import readiness

    d = deployment
    eng = engine.engine(d.state, d.kubeconfig)
    stack = engine.local_stack(eng, d.state / "project", "local")
    count = len(engine.stack_file_config("local")["ray-platform:ray"]["sharedPackages"])
    bad_key = f"ray-platform:ray.sharedPackages[{count}]"
    stack.set_config(bad_key, auto.ConfigValue("nosuchpackage-ray-platform==0.0.1"), path=True)
    stack.up(color="never")
    with pytest.raises(readiness.NotReady) as failed:
        readiness.wait(d.kubeconfig, NS, CLUSTER, {"cpu": 1}, timeout=300, say=lambda _m: None)
    message = str(failed.value)
    assert "nosuchpackage-ray-platform" in message and "\n" not in message, message
    assert len(pods(d, "head")) == 1  # retried in place, not a new head each time
    stack.remove_config(bad_key, path=True)
    stack.up(color="never")
    readiness.wait(d.kubeconfig, NS, CLUSTER, {"cpu": 1}, timeout=600, say=lambda _m: None)


def test_zz_destroy_and_down_leave_the_machine_as_it_was(deployment: Deployment) -> None:
    d = deployment
    ok(job("destroy", d.state, d.cluster))
    ok(job("down", d.state, d.cluster))
    assert_unchanged(d.before, d.state.parent)
