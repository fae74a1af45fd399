"""The bucket failing under `ray-platform submit`: a real MinIO stopped, killed mid-upload and
brought back, and uploads interrupted by Ctrl-C. What must hold: exit 5 with one line, never an
object (whole or partial) under the zip's content-hash name unless the upload completed, and the
same command succeeding once the bucket is back."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import buckets, package
from cli.errors import CliError, Exit
from tests.cli.conftest import Stores, Submit, closed_port, objects, write_outputs
from tools.devcluster import objectstore
from tools.testing import bucket_servers

Upload = Callable[..., buckets.Written]


def _project(root: Path) -> Path:
    """Code plus 12 MiB that does not compress: over boto3's 8 MiB multipart threshold and
    over one 8 MiB GCS chunk, so an upload is several requests that can be cut between."""
    root.mkdir(parents=True)
    (root / "main.py").write_text("print('hi')\n")
    (root / "weights.bin").write_bytes(os.urandom(12 * package.MIB))
    return root


def _after(nbytes: int, upload: Upload, act: Callable[[], None]) -> Upload:
    """`upload` that calls `act` once, when `nbytes` have been sent."""

    def cut(
        self: object, path: Path, key: str, progress: buckets.Progress, **kw: object
    ) -> buckets.Written:
        sent = 0

        def counting(n: int) -> None:
            nonlocal sent
            before, sent = sent, sent + n
            if before < nbytes <= sent:
                act()
            progress(n)

        return upload(self, path, key, counting, **kw)

    return cut


class _MinIO:
    """A MinIO of this test's own (the session's is shared): stopped and restarted in place."""

    def __init__(self, directory: Path) -> None:
        self.server = bucket_servers.start_minio(directory)

    def crash(self) -> None:
        bucket_servers.stop(self.server, grace=0)

    def restart(self) -> None:
        self.server = bucket_servers.restart_minio(self.server)


@pytest.fixture
def minio(tmp_path: Path) -> Iterator[_MinIO]:
    store = _MinIO(tmp_path / "s3")
    try:
        yield store
    finally:
        bucket_servers.stop(store.server, grace=0)


def test_bucket_down_then_back(
    tmp_path: Path, minio: _MinIO, run_submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "proj")
    outputs = write_outputs(tmp_path / "o.json", bucketUri="s3://ray/faults")
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--", "python", "main.py"]
    # The dashboard is a closed port: a submit that gets past the bucket stops there (exit 6).
    env = {
        **minio.server.env(),
        "RAY_ADDRESS": f"http://127.0.0.1:{closed_port()}",
        "RAY_AUTH_TOKEN": "t" * 32,
    }

    minio.crash()  # down before the submit starts
    down = run_submit(argv, env)
    assert down.code == Exit.BUCKET, down.err
    assert len(down.error_lines) == 1, down.err
    assert down.error_lines[0].startswith("ray-platform submit: bucket s3://ray is unreachable")

    minio.restart()
    original: Upload = buckets._S3.upload
    monkeypatch.setattr(buckets._S3, "upload", _after(4 * package.MIB, original, minio.crash))
    torn = run_submit(argv, env)  # MinIO killed with a third of the zip sent
    assert torn.code == Exit.BUCKET, torn.err
    assert len(torn.error_lines) == 1, torn.err
    assert "uploading" in torn.err

    minio.restart()
    assert objects(minio.server, "faults/") == {}  # nothing under the hash name, not even part

    monkeypatch.setattr(buckets._S3, "upload", original)
    back = run_submit(argv, env)
    assert back.code == Exit.CLUSTER, back.err  # the bucket step passed
    held = objects(minio.server, "faults/")
    assert len(held) == 1
    (key,) = held
    client = objectstore.s3_client(minio.server.endpoint, minio.server.credentials)
    body = client.get_object(Bucket="ray", Key=key)["Body"].read()
    # Whole: the name is the hash of exactly these bytes.
    assert key == f"faults/working_dirs/{hashlib.sha256(body).hexdigest()[:32]}.zip"


@pytest.mark.parametrize("scheme", ["s3", "gs"])
@pytest.mark.usefixtures("terminal_ctrl_c")
def test_ctrl_c_mid_upload_leaves_no_object(
    tmp_path: Path,
    stores: Stores,
    run_submit: Submit,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    server = stores.s3 if scheme == "s3" else stores.gcs
    prefix = f"ctrl-c/{scheme}"
    root = _project(tmp_path / "proj")
    outputs = write_outputs(tmp_path / "o.json", bucketUri=f"{scheme}://ray/{prefix}")
    env = {**stores.env(), "RAY_ADDRESS": f"http://127.0.0.1:{closed_port()}"}
    client_class = buckets._S3 if scheme == "s3" else buckets._GCS
    original: Upload = client_class.upload

    def ctrl_c() -> None:
        # To the main thread, as a terminal's Ctrl-C lands (raise_signal from one of boto3's
        # sending threads would leave the main thread asleep until the upload was over).
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        # Hold this part back a little, as a slow link would, so that the local MinIO does not
        # take the rest of the zip before the main thread has cancelled the upload.
        time.sleep(0.5)

    monkeypatch.setattr(client_class, "upload", _after(4 * package.MIB, original, ctrl_c))
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--", "python", "main.py"]
    r = run_submit(argv, env)
    assert r.code == Exit.DETACHED, r.err
    assert r.error_lines == ["ray-platform submit: interrupted before the job was submitted"]
    assert objects(server, prefix) == {}
    if scheme == "s3":
        # The interrupted multipart upload was aborted: no parts left behind either.
        client = objectstore.s3_client(server.endpoint, server.credentials)
        assert client.list_multipart_uploads(Bucket="ray", Prefix=prefix).get("Uploads", []) == []


def test_a_partial_object_under_the_hash_name_is_replaced_not_trusted(
    tmp_path: Path, stores: Stores, run_submit: Submit
) -> None:
    """Were a torn object ever under the name (put by hand, or by a client that writes
    objects piecemeal), skipping the upload because the name exists would ship it to every
    node: one of another size than the zip is replaced."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "main.py").write_text("print('whole')\n")
    pkg = package.build(root, [], package.DEFAULT_MAX_SIZE, tmp_path)
    key = f"torn/working_dirs/{pkg.name}"
    client = objectstore.s3_client(stores.s3.endpoint, stores.s3.credentials)
    client.put_object(Bucket="ray", Key=key, Body=pkg.path.read_bytes()[:40])
    outputs = write_outputs(tmp_path / "o.json", bucketUri="s3://ray/torn")
    env = {
        **stores.env(),
        "RAY_ADDRESS": f"http://127.0.0.1:{closed_port()}",
        "RAY_AUTH_TOKEN": "t",
    }
    argv = ["--outputs", str(outputs), "--working-dir", str(root), "--", "python", "main.py"]
    r = run_submit(argv, env)
    assert r.code == Exit.CLUSTER, r.err
    assert f"s3://ray/{key} is in the bucket with 40 bytes, not this zip's {pkg.size}" in r.err
    assert client.get_object(Bucket="ray", Key=key)["Body"].read() == pkg.path.read_bytes()
    again = run_submit(argv, env)
    assert "already in the bucket (same content): not uploading" in again.err


class _SecretCore:
    """The one Kubernetes call the command makes for the local stack's bucket keys."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.read: list[tuple[str, str]] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.read.append((namespace, name))
        return types.SimpleNamespace(data=self.data)


def test_the_local_stacks_bucket_keys_come_from_its_secret(
    tmp_path: Path, stores: Stores, run_submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ray-platform submit --stack local` as the README runs it: no AWS keys in the shell. The
    upload reaches the stack's MinIO with the keys its Ray pods read (Secret ray-object-store);
    a shell's own keys or endpoint win, an `--outputs` file never makes the command read a
    Secret, and a Secret that cannot be read is one line naming it and what to set instead."""
    import json

    from cli import dashboard
    from tests.cli.test_submit import _fake_pulumi

    s3 = stores.s3
    core = _SecretCore({"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key})
    monkeypatch.setattr(dashboard, "_core_api", lambda *_: core)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    prefix = "from-secret"
    stack_outputs = {
        "mode": "dev",
        "cloud": "local",
        "runtimeEnv": "{}",
        "namespace": "ray",
        "rayClusterName": "ray",
        "bucketUri": f"s3://ray/{prefix}",
        "objectStoreEndpoint": s3.endpoint,
        "objectStoreSecret": "ray-object-store",
    }
    bin_dir, _ = _fake_pulumi(tmp_path, stack_outputs)
    root = _project(tmp_path / "proj")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PULUMI_BACKEND_URL": "file:///srv/state",  # the user's own backend: no tools/up cache
        "RAY_ADDRESS": f"http://127.0.0.1:{closed_port()}",  # stops after the upload
        "RAY_AUTH_TOKEN": "t",
        "AWS_REGION": s3.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    argv = ["--stack", "local", "--working-dir", str(root), "--", "python", "main.py"]
    r = run_submit(argv, env)
    assert r.code == Exit.CLUSTER, r.err  # uploaded, then no dashboard
    assert core.read == [("ray", "ray-object-store")]
    assert "bucket credentials: Secret ray/ray-object-store" in r.err
    assert [k for k in objects(s3, prefix) if k.endswith(".zip")], r.err

    core.read.clear()  # keys of the shell's own: the Secret is not read (and MinIO refuses them)
    r = run_submit(argv, {**env, "AWS_ACCESS_KEY_ID": "mine", "AWS_SECRET_ACCESS_KEY": "mine"})
    assert r.code == Exit.BUCKET and core.read == [], r.err
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # run_submit leaves them set
        monkeypatch.delenv(var)
    closed = f"http://127.0.0.1:{closed_port()}"  # an endpoint of the shell's own: not read
    r = run_submit(argv, {**env, "AWS_ENDPOINT_URL_S3": closed})
    assert r.code == Exit.BUCKET and core.read == [], r.err
    outputs = tmp_path / "o.json"  # the same outputs as a file: never a Secret
    outputs.write_text(json.dumps(stack_outputs))
    file_argv = ["--outputs", str(outputs), *argv[2:]]
    r = run_submit(file_argv, env)
    assert r.code == Exit.BUCKET and core.read == [], r.err

    def no_cluster(code: Exit = Exit.CLUSTER, instead: str = "") -> Any:
        raise CliError(
            code, f"no Kubernetes credentials (KUBECONFIG or ~/.kube/config); or {instead}"
        )

    monkeypatch.setattr(dashboard, "_core_api", no_cluster)
    (root / "main.py").write_text("print('changed')\n")  # a new zip: the upload is needed
    r = run_submit(argv, env)
    assert r.code == Exit.BUCKET, r.err
    assert r.error_lines == [
        "ray-platform submit: no Kubernetes credentials (KUBECONFIG or ~/.kube/config); "
        "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ], r.err
    monkeypatch.setattr(dashboard, "_core_api", lambda *_: _SecretCore({"AWS_ACCESS_KEY_ID": "k"}))
    r = run_submit(argv, env)
    assert r.error_lines == [
        "ray-platform submit: Secret ray/ray-object-store has no key 'AWS_SECRET_ACCESS_KEY'"
    ], r.err
