"""The main job keeps the state in step with the cluster (tools/devcluster/stack.py), decided
without an engine: when to refresh, what is recorded, how the cluster is identified; and the bucket
config it sets when it uses the project's own control plane (and leaves alone when it does not)."""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import types
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from tools.devcluster import engine, localcluster, stack
from tools.testing.pulumi_mocks import run_program, stack_config

RESOURCES = [
    {"type": "pulumi:pulumi:Stack", "urn": "s"},
    {"type": "pulumi:providers:kubernetes", "urn": "p"},
    {"type": "kubernetes:core/v1:Namespace", "urn": "n"},
    {"type": "kubernetes:ray.io/v1:RayCluster", "urn": "r"},
]


def test_new_cluster_forces_a_refresh() -> None:
    """The bug this guards: up, down, up reported `unchanged` against an empty new cluster."""
    assert stack.needs_refresh("uid-old", "uid-new", deployed=15)


def test_same_cluster_trusts_the_state() -> None:
    assert not stack.needs_refresh("uid-1", "uid-1", deployed=15)


@pytest.mark.parametrize(("recorded", "current"), [(None, "uid-1"), ("uid-1", None), (None, None)])
def test_unknown_identity_refreshes_to_be_safe(recorded: str | None, current: str | None) -> None:
    assert stack.needs_refresh(recorded, current, deployed=3)


def test_empty_state_never_needs_a_refresh() -> None:
    assert not stack.needs_refresh(None, "uid-1", deployed=0)
    assert not stack.needs_refresh("uid-0", "uid-1", deployed=0)


def test_only_real_objects_count_as_deployed() -> None:
    assert stack.deployed_resources({"resources": RESOURCES}) == 2
    assert stack.deployed_resources({"resources": RESOURCES[:2]}) == 0
    assert stack.deployed_resources({}) == 0
    assert stack.deployed_resources(None) == 0


def test_identity_is_recorded_per_stack_and_forgotten_on_destroy(tmp_path: Path) -> None:
    assert stack.recorded_identity(tmp_path, "local") is None
    stack.record_identity(tmp_path, "local", "uid-1")
    stack.record_identity(tmp_path, "other", "uid-2")
    assert stack.recorded_identity(tmp_path, "local") == "uid-1"
    assert stack.recorded_identity(tmp_path, "other") == "uid-2"
    stack.record_identity(tmp_path, "local", None)
    assert stack.recorded_identity(tmp_path, "local") is None
    assert stack.recorded_identity(tmp_path, "other") == "uid-2"


def test_a_damaged_record_means_unknown(tmp_path: Path) -> None:
    (tmp_path / stack.IDENTITY_FILE).write_text("{damaged")
    assert stack.recorded_identity(tmp_path, "local") is None
    stack.record_identity(tmp_path, "local", "uid-1")  # and is replaced, not fatal
    assert stack.recorded_identity(tmp_path, "local") == "uid-1"


@pytest.fixture
def api() -> Iterator[str]:
    kube_system = {"metadata": {"name": "kube-system", "uid": "uid-live"}}
    with _api({"/api/v1/namespaces/kube-system": kube_system}) as server:
        yield server


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_cluster_identity_is_the_kube_system_uid(tmp_path: Path, api: str) -> None:
    assert stack.cluster_identity(_kubeconfig(tmp_path / "kc", api)) == "uid-live"


def test_unreachable_or_unusable_cluster_has_no_identity(tmp_path: Path) -> None:
    assert stack.cluster_identity(None) is None
    assert stack.cluster_identity(_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")) is None
    (tmp_path / "bad").write_text("not: [a kubeconfig")
    assert stack.cluster_identity(tmp_path / "bad") is None


STORE = localcluster.ObjectStore(
    "http://127.0.0.1:40123", "ray", "rp0123456789abcdef", "minio-secret-0123456789"
)


def test_bucket_overrides_turn_the_bucket_on_and_keep_the_rest_of_each_block() -> None:
    config = stack_config("local")
    overrides = stack.bucket_overrides(config, STORE)
    assert set(overrides) == {"ray-platform:storage", "ray-platform:local"}
    storage = overrides["ray-platform:storage"]
    assert storage["artifactBucket"]["enabled"] is True
    assert storage["sharedFilesystem"] == config["ray-platform:storage"]["sharedFilesystem"]
    local = overrides["ray-platform:local"]
    assert local["hostPath"] == config["ray-platform:local"]["hostPath"]
    assert local["objectStore"] == {
        "endpoint": STORE.endpoint,
        "bucket": "ray",
        "accessKeyId": STORE.access_key,
    }
    # The secret key never goes into the plain overrides, and the input is not mutated.
    assert STORE.secret_key not in json.dumps(overrides)
    assert config == stack_config("local")


def test_a_stale_plain_secret_key_is_dropped_from_the_overrides() -> None:
    config = copy.deepcopy(stack_config("local"))
    config["ray-platform:local"]["objectStore"] = {"secretAccessKey": "plain", "bucket": "x"}
    store = stack.bucket_overrides(config, STORE)["ray-platform:local"]["objectStore"]
    assert "secretAccessKey" not in store
    assert store["bucket"] == "ray"


def test_the_secret_key_is_set_as_a_pulumi_secret_by_path() -> None:
    secrets = stack.bucket_secrets(STORE)
    assert list(secrets) == ["ray-platform:local.objectStore.secretAccessKey"]
    value = secrets[stack.SECRET_KEY_PATH]
    assert value.secret is True
    assert value.value == STORE.secret_key


def test_the_config_the_job_sets_is_one_the_program_accepts() -> None:
    """Overrides plus the secret (as the engine hands it over): the bucket is on, on MinIO."""
    config = {**stack_config("local"), **stack.bucket_overrides(stack_config("local"), STORE)}
    config["ray-platform:local"]["objectStore"]["secretAccessKey"] = STORE.secret_key
    run = run_program("local", config)
    assert run.outputs["bucketUri"] == "s3://ray/local"
    assert run.outputs["objectStoreEndpoint"] == STORE.endpoint


class _FakeStack:
    """What main() calls on an Automation API stack, recorded."""

    def __init__(self) -> None:
        self.config: list[tuple[str, auto.ConfigValue, bool]] = []
        self.ran: list[str] = []

    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None:
        self.config.append((key, value, path))

    def export_stack(self) -> Any:
        return types.SimpleNamespace(deployment={"resources": []})

    def preview(self, **_kw: Any) -> None:
        self.ran.append("preview")

    def outputs(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def fake_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeStack]:
    """main() with the control plane and the engine replaced; the work dir is the real one."""
    fake = _FakeStack()
    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setattr(localcluster, "up", lambda _dir=None, **_kw: kubeconfig)
    monkeypatch.setattr(localcluster, "kubeconfig", lambda _dir=None: kubeconfig)
    monkeypatch.setattr(
        localcluster,
        "status",
        lambda _dir=None: localcluster.ClusterStatus(tmp_path / "cluster", kubeconfig, ()),
    )
    monkeypatch.setattr(localcluster, "object_store", lambda _dir=None: STORE)
    monkeypatch.setattr(stack, "cluster_identity", lambda _kc: "uid-1")
    monkeypatch.setattr(
        engine, "engine", lambda state, kc: engine.Engine(tmp_path / "bin", {"KUBECONFIG": str(kc)})
    )
    monkeypatch.setattr(engine, "local_stack", lambda _eng, _wd, _name="local": fake)
    yield fake


def _work_config(tmp_path: Path) -> dict[str, Any]:
    data = yaml.safe_load((tmp_path / "state" / "project" / "Pulumi.local.yaml").read_text())
    return dict(data["config"])


def test_on_the_projects_control_plane_the_job_turns_the_bucket_on(
    fake_job: _FakeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert stack.main(["preview", "--state", str(tmp_path / "state")]) == 0
    assert fake_job.ran == ["preview"]
    config = _work_config(tmp_path)
    assert config["ray-platform:storage"]["artifactBucket"]["enabled"] is True
    assert config["ray-platform:local"]["objectStore"]["endpoint"] == STORE.endpoint
    assert STORE.secret_key not in json.dumps(config)  # only through set_config, as a secret
    ((key, value, path),) = fake_job.config
    assert (key, value.value, value.secret, path) == (
        stack.SECRET_KEY_PATH,
        STORE.secret_key,
        True,
        True,
    )
    # The repository's stack file is untouched.
    committed = engine.stack_file_config("local")
    assert committed["ray-platform:storage"]["artifactBucket"] == {"enabled": False}
    assert "objectStore" not in committed["ray-platform:local"]


def test_with_a_kubeconfig_of_its_own_the_stack_file_applies_as_it_is(
    fake_job: _FakeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kind.kubeconfig"))
    assert stack.main(["preview", "--state", str(tmp_path / "state")]) == 0
    assert _work_config(tmp_path) == engine.stack_file_config("local")
    assert fake_job.config == []


def test_a_control_plane_without_minio_leaves_the_stack_file_as_it_is(
    fake_job: _FakeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)

    def none(_dir: Path | None = None) -> localcluster.ObjectStore:
        raise localcluster.LocalClusterError("no object store")

    monkeypatch.setattr(localcluster, "object_store", none)
    assert stack.main(["preview", "--state", str(tmp_path / "state")]) == 0
    assert _work_config(tmp_path) == engine.stack_file_config("local")
    assert fake_job.config == []


def test_on_the_projects_node_pods_get_the_mirror_and_a_shared_dir_down_removes(
    fake_job: _FakeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    index = "http://10.244.0.1:4321/index/"
    node_status = localcluster.ClusterStatus(
        tmp_path / "cluster",
        tmp_path / "kubeconfig",
        (),
        node=True,
        registry="127.0.0.1:5000",
        package_index=index,
    )
    monkeypatch.setattr(localcluster, "status", lambda _dir=None: node_status)
    pushed: list[str] = []
    monkeypatch.setattr(
        stack, "ensure_ray_image", lambda _config, registry: pushed.append(registry)
    )
    monkeypatch.setattr(stack, "node_allocatable", lambda _kc: {"cpu": "2", "memory": "24Gi"})
    assert stack.main(["preview", "--state", str(tmp_path / "state")]) == 0
    config = _work_config(tmp_path)
    assert config["ray-platform:ray"]["packageIndex"] == index
    shared = Path(config["ray-platform:local"]["hostPath"])
    assert shared == localcluster.shared_dir(None)
    # The bucket's overrides of the same block are kept (both change ray-platform:local).
    assert config["ray-platform:local"]["objectStore"]["endpoint"] == STORE.endpoint
    assert pushed == ["127.0.0.1:5000"]
    # The rest of the stack file's blocks is kept.
    assert (
        config["ray-platform:ray"]["version"]
        == engine.stack_file_config("local")["ray-platform:ray"]["version"]
    )


def test_the_jupyter_token_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = engine.jupyter_token(tmp_path)
    assert len(first) >= 32
    assert engine.jupyter_token(tmp_path) == first
    assert (tmp_path / engine.JUPYTER_TOKEN_FILE).stat().st_mode & 0o777 == 0o600


def test_min_workers_come_from_the_stack_file() -> None:
    config = {
        "ray-platform:ray": {"workerGroups": [{"name": "cpu", "minReplicas": 2}, {"name": "gpu"}]}
    }
    assert stack.min_workers(config) == {"cpu": 2, "gpu": 0}


def test_a_stack_larger_than_the_node_is_refused_in_one_line() -> None:
    config = stack_config("local")
    summary = stack.check_fits(config, "local", {"cpu": "2", "memory": "24Gi"})
    assert "head" in summary
    with pytest.raises(stack.DoesNotFit) as refused:
        stack.check_fits(config, "local", {"cpu": "1", "memory": "24Gi"})
    assert "more than the node can hold" in str(refused.value)
    assert "\n" not in str(refused.value)
    big = copy.deepcopy(config)
    big["ray-platform:ray"]["workerGroups"][0]["minReplicas"] = 2
    big["ray-platform:ray"]["workerGroups"][0]["cpu"] = "1"
    with pytest.raises(stack.DoesNotFit):
        stack.check_fits(big, "local", {"cpu": "2", "memory": "24Gi"})


def test_the_projects_own_kubeconfig_in_the_shell_is_still_the_local_cluster(
    fake_job: _FakeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `eval "$(tools/up env)"` the next tools/up must keep the local cluster's overrides."""
    from tools.devcluster.localcluster import state

    cluster = tmp_path / "cluster"
    monkeypatch.setenv("KUBECONFIG", str(state.layout(cluster).kubeconfig))
    argv = ["preview", "--state", str(tmp_path / "state"), "--cluster-dir", str(cluster)]
    assert stack.main(argv) == 0
    assert _work_config(tmp_path)["ray-platform:storage"]["artifactBucket"]["enabled"] is True


def test_rewriting_the_work_copy_keeps_the_secrets_the_engine_set(tmp_path: Path) -> None:
    """The e2e tier and the main job rewrite the copy with overrides; the Jupyter token the engine
    set (encrypted with the copy's salt) must survive, or the next run has none."""
    wd = engine.work_dir(tmp_path)
    stack_file = wd / "Pulumi.local.yaml"
    data = yaml.safe_load(stack_file.read_text())
    data["encryptionsalt"] = "v1:salt"
    data["config"]["ray-platform:jupyterToken"] = {"secure": "v1:cipher"}
    stack_file.write_text(yaml.safe_dump(data))
    engine.work_dir(tmp_path, overrides={"ray-platform:mode": "dev"})
    again = yaml.safe_load(stack_file.read_text())
    assert again["config"]["ray-platform:jupyterToken"] == {"secure": "v1:cipher"}
    assert again["encryptionsalt"] == "v1:salt"


def test_the_work_copy_links_into_this_clone_even_when_another_clone_made_it(
    tmp_path: Path,
) -> None:
    """The state outlives clones: a work copy made by a clone since deleted (a temporary one)
    holds dangling links, and the engine would find no Pulumi.yaml ("no Pulumi.yaml project file
    found"). Every link is pointed at this clone; links to what it does not have are dropped."""
    wd = tmp_path / "project"
    wd.mkdir()
    gone = tmp_path / "deleted-clone"
    (wd / "Pulumi.yaml").symlink_to(gone / "Pulumi.yaml")
    (wd / "removed_module").symlink_to(gone / "removed_module")
    engine.work_dir(tmp_path)
    assert (wd / "Pulumi.yaml").resolve() == (engine.ROOT / "Pulumi.yaml").resolve()
    assert (wd / "Pulumi.yaml").exists()
    assert not (wd / "removed_module").is_symlink()


def test_a_prod_stack_on_the_node_gets_no_package_index_and_the_api_servers_port(
    tmp_path: Path,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({"clusters": [{"cluster": {"server": "https://10.244.0.1:55005"}}]})
    )
    port = stack.api_server_port(kubeconfig)
    assert port == 55005
    prod = stack_config("local-prod")
    over = stack.node_overrides(prod, "http://10.244.0.1:3141/root/pypi/+simple/", tmp_path, port)
    assert "packageIndex" not in over[stack.RAY_KEY]  # closed egress stays closed to it
    assert over[stack.LOCAL_KEY]["apiServerPort"] == 55005
    dev = stack.node_overrides(stack_config("local"), "http://x:1/simple/", tmp_path, port)
    assert dev[stack.RAY_KEY]["packageIndex"] == "http://x:1/simple/"
    # The base by the registry's address, the app image once there is one.
    base = f"127.0.0.1:5000/rayproject/ray:2.60.0-py311@sha256:{'a' * 64}"
    first = stack.prod_image_overrides(prod, base, "127.0.0.1:5000", None)
    assert first[stack.RAY_KEY]["image"] == first[stack.RAY_KEY]["baseImage"] == base
    assert first[stack.LOCAL_KEY]["imageRepository"] == "127.0.0.1:5000/ray-platform/app"
    app = f"127.0.0.1:5000/ray-platform/app:2.60.0-py311-abc@sha256:{'b' * 64}"
    assert (
        stack.prod_image_overrides(prod, base, "127.0.0.1:5000", app)[stack.RAY_KEY]["image"] == app
    )


def test_prod_image_arguments_are_checked_before_anything_is_built() -> None:
    prod, dev = stack_config("local-prod"), stack_config("local")
    with pytest.raises(stack.BadArgument, match=r"^--image rayproject/ray:2.60.0-py311: .*digest"):
        stack.check_image_argument(prod, "local-prod", "rayproject/ray:2.60.0-py311")
    stack.check_image_argument(prod, "local-prod", f"r/x:t@sha256:{'a' * 64}")
    stack.check_image_argument(dev, "local", "rayproject/ray:2.60.0-py311")  # dev: any image


def test_the_app_image_is_remembered_for_the_same_registry_only(tmp_path: Path) -> None:
    ref = f"127.0.0.1:5000/ray-platform/app:2.60.0-py311-abc@sha256:{'b' * 64}"
    assert stack.app_image(tmp_path, "local-prod", None, "127.0.0.1:5000") is None
    assert stack.app_image(tmp_path, "local-prod", ref, "127.0.0.1:5000") == ref
    assert stack.app_image(tmp_path, "local-prod", None, "127.0.0.1:5000") == ref
    # A node since taken down had its registry on another port: the image went with it.
    assert stack.app_image(tmp_path, "local-prod", None, "127.0.0.1:6000") is None


@pytest.mark.parametrize(
    ("labels", "expected"),
    [({"ray-platform/stack": "local-prod"}, "local-prod"), ({"ray-platform/stack": "local"}, None),
     ({}, None)],
)  # fmt: skip
def test_another_stacks_raycluster_is_found_by_its_label(
    tmp_path: Path, labels: dict[str, str], expected: str | None
) -> None:
    items = [{"metadata": {"name": "ray", "namespace": "ray", "labels": labels}}]
    with _api({"/apis/ray.io/v1/rayclusters": {"items": items}}) as server:
        found = stack.other_stack_deployed(_kubeconfig(tmp_path / "kc", server), "local")
    assert found == expected


def _pv(name: str, stack: str, bound: bool = False) -> dict[str, Any]:
    """A PersistentVolume as SharedVolume makes it: no claimRef until a claim binds it."""
    labels = {"app.kubernetes.io/managed-by": "pulumi", "ray-platform/stack": stack}
    meta = {"name": name, "uid": f"uid-{name}", "resourceVersion": "7", "labels": labels}
    spec: dict[str, Any] = {"hostPath": {"path": "/srv/ray-shared"}}
    if bound:
        spec["claimRef"] = {"namespace": "ray", "name": "ray-shared", "uid": "claim-uid"}
    return {"metadata": meta, "spec": spec}


def test_an_interrupted_runs_unrecorded_volume_is_deleted_as_it_was_read(tmp_path: Path) -> None:
    """Only this stack's never-bound volume the state does not know, listed by the stack's
    label, deleted with the uid and resourceVersion read (a claim binding it meanwhile wins)."""
    items = [_pv("shared-pv-known", "local", bound=True), _pv("shared-pv-orphan", "local")]
    seen: list[tuple[str, str, Any]] = []
    deployment = {
        "resources": [{"type": "kubernetes:core/v1:PersistentVolume", "id": "shared-pv-known"}]
    }
    with _api({"/api/v1/persistentvolumes": {"items": items}}, seen) as server:
        stack.delete_orphaned_volumes(_kubeconfig(tmp_path / "kc", server), deployment, "local")
    listed = urllib.parse.urlsplit(seen[0][1])
    selector = urllib.parse.parse_qs(listed.query)["labelSelector"][0]
    assert set(selector.split(",")) == {
        "app.kubernetes.io/managed-by=pulumi",
        "ray-platform/stack=local",
    }
    assert seen[1:] == [
        (
            "DELETE",
            "/api/v1/persistentvolumes/shared-pv-orphan",
            {
                "propagationPolicy": "Foreground",
                "preconditions": {"uid": "uid-shared-pv-orphan", "resourceVersion": "7"},
            },
        )
    ]


@pytest.mark.parametrize(
    ("own", "recorded", "current", "expected"),
    [
        (True, "uid-1", "uid-1", True),  # the project's cluster, the state's own
        (True, None, "uid-1", True),  # a first up: nothing recorded yet
        (True, "uid-1", "uid-2", False),  # the state belongs to a cluster since taken down
        (False, "uid-1", "uid-1", False),  # $KUBECONFIG: someone else's cluster
    ],
)
def test_volumes_are_swept_only_on_the_projects_own_cluster_for_its_own_state(
    own: bool, recorded: str | None, current: str | None, expected: bool
) -> None:
    target = stack.Target(Path("kubeconfig"), own=own)
    assert stack.sweeps_volumes(target, recorded, current) is expected


def test_kubeconfig_given_by_the_user_is_not_the_projects_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")))
    assert stack._target(False, tmp_path / "cluster").own is False


def test_a_cluster_that_will_not_list_or_delete_volumes_leaves_the_up_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes: dict[str, Any] = {
        "/api/v1/persistentvolumes": {"items": [_pv("shared-pv-orphan", "local")]},
        "/api/v1/persistentvolumes/shared-pv-orphan": "conflict",
    }
    with _api(routes) as server:
        stack.delete_orphaned_volumes(_kubeconfig(tmp_path / "kc", server), {}, "local")
    assert "left PersistentVolume shared-pv-orphan" in capsys.readouterr().err
    unreachable = _kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")
    stack.delete_orphaned_volumes(unreachable, {}, "local")
    assert "could not list this stack's PersistentVolumes" in capsys.readouterr().err
    (tmp_path / "bad").write_text("not: [a kubeconfig")  # not even a client
    stack.delete_orphaned_volumes(tmp_path / "bad", {}, "local")
    assert "could not list this stack's PersistentVolumes" in capsys.readouterr().err


@contextlib.contextmanager
def _api(routes: dict[str, Any], seen: list[tuple[str, str, Any]] | None = None) -> Iterator[str]:
    """An API server answering GET `routes` (path -> JSON body), 404 elsewhere; each request
    (method, path with query, JSON body) appended to `seen`; a DELETE answers 200, or 409 when
    its path is routed to the string "conflict"."""

    class Handler(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            if seen is not None:
                seen.append(("DELETE", self.path, body))
            status = 409 if routes.get(self.path) == "conflict" else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"kind": "Status", "code": status}).encode())

        def do_GET(self) -> None:
            if seen is not None:
                seen.append(("GET", self.path, None))
            found = routes.get(self.path.split("?")[0])
            body = json.dumps(found if found is not None else {}).encode()
            self.send_response(200 if found is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_work_copy_has_no_project_file_so_the_engine_never_resyncs_the_checkouts_venv(
    tmp_path: Path,
) -> None:
    """With pyproject.toml in the work copy, the language host's `uv sync` reinstalled the
    checkout's project from the copy's path: deleting a test's state broke `ray-platform`."""
    wd = tmp_path / "project"
    wd.mkdir()
    (wd / "pyproject.toml").symlink_to(engine.ROOT / "pyproject.toml")  # an older work copy
    engine.work_dir(tmp_path)
    assert not (wd / "pyproject.toml").is_symlink() and not (wd / "uv.lock").exists()
    assert (wd / ".venv").resolve() == (engine.ROOT / ".venv").resolve()
    assert (wd / "__main__.py").exists() and (wd / "Pulumi.yaml").exists()


def test_an_engine_failure_names_the_resource_and_its_cause_in_one_line() -> None:
    """The engine ends a failed up with a multi-error list; "1 error occurred:" alone said
    nothing (a CI failure showed only that)."""
    err = auto.CommandError(
        auto.CommandResult(
            stdout="Resources:\n    2 errored\n",
            stderr=(
                "error: 1 error occurred:\n"
                "\t* resource ray/ray-shared was not successfully created: timed out\n\n"
            ),
            code=255,
        )
    )
    assert stack._reason(err) == (
        "1 error occurred: resource ray/ray-shared was not successfully created: timed out"
    )
    spaced = auto.CommandError(
        auto.CommandResult(stdout="", stderr="error: 1 error occurred:\n\n    * boom\n", code=255)
    )
    assert stack._reason(spaced) == "1 error occurred: boom"
    # As the engine really prints it: progress rows first (the header cut to its first line),
    # the Diagnostics block with the items below; stdout before stderr in the error's text.
    rows = (
        "Updating (local):\n"
        " +  kubernetes:core/v1:PersistentVolumeClaim shared-pvc creating failed "
        "error: 1 error occurred:\n"
        "Diagnostics:\n"
        "  kubernetes:core/v1:PersistentVolumeClaim (shared-pvc):\n"
        "    error: 1 error occurred:\n"
        "    \t* resource ray/ray-shared was not successfully created: timed out\n\n"
        "Resources:\n    2 errored\n"
    )
    real = auto.CommandError(auto.CommandResult(rows, "error: update failed\n", 255))
    assert stack._reason(real) == (
        "1 error occurred: resource ray/ray-shared was not successfully created: timed out"
    )
    plain = auto.CommandError(auto.CommandResult(stdout="", stderr="error: boom\n", code=255))
    assert stack._reason(plain) == "boom"


def test_a_stack_from_before_the_crd_release_gets_the_hand_over_hint() -> None:
    """Helm refuses to adopt the CRDs an earlier version applied: the line says where the
    one-time hand-over is (README), and an unrelated failure gets no hint."""
    helm = (
        "error: 1 error occurred:\n\t* Unable to continue with install: CustomResourceDefinition "
        '"rayclusters.ray.io" in namespace "" exists and cannot be imported into the current '
        "release: invalid ownership metadata; label validation error: missing key "
        '"app.kubernetes.io/managed-by": must be set to "Helm"\n'
    )
    lines = stack.engine_failure("up", auto.CommandError(auto.CommandResult("", helm, 255)))
    assert lines[0].startswith("error: pulumi up failed: 1 error occurred: Unable to continue")
    assert "README" in lines[1] and "hand them over" in lines[1]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "A stack deployed before the CRDs became a Helm release" in readme
    other = auto.CommandError(auto.CommandResult("", "error: boom\n", 255))
    assert stack.engine_failure("preview", other) == ["error: pulumi preview failed: boom"]


def test_the_work_copy_keeps_its_own_crd_chart_beside_a_clone_that_has_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program writes the CRDs' chart where it runs: in the work copy (tools/up) and in the
    clone (unit tests, a `pulumi preview` there). Linking the clone's into a copy that already
    has its own real one failed with FileExistsError on every later tools/up."""
    clone = tmp_path / "clone"
    (clone / ".kuberay-crds" / "1.6.1_crds.x").mkdir(parents=True)
    (clone / "Pulumi.yaml").write_text("name: ray-platform\n")
    (clone / "Pulumi.local.yaml").write_text("config: {}\n")
    monkeypatch.setattr(engine, "ROOT", clone)
    state = tmp_path / "state"
    (state / "project" / ".kuberay-crds" / "1.6.1_crds.x").mkdir(parents=True)  # a real one
    wd = engine.work_dir(state)
    assert not (wd / ".kuberay-crds").is_symlink()
    assert (wd / "Pulumi.yaml").is_symlink()
    # And a copy made before the program ran has no link the program would write through.
    fresh = engine.work_dir(tmp_path / "fresh")
    assert not (fresh / ".kuberay-crds").exists()
