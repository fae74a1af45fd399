"""Real parts for the `ray-platform submit` tests, one of each per test session.

MinIO and fake-gcs-server (built from Go modules by tools/build.py; a missing binary is built,
and a failed build fails the tests) and a real Ray head from the venv's `ray[default]`, all on
127.0.0.1, with Ray's token auth on. Ray gets the object stores' environment, so its runtime_env
agent downloads `s3://` working_dirs from MinIO through boto3 and `gs://` ones from
fake-gcs-server through google-cloud-storage (both honour the standard endpoint variables).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.devcluster import objectstore
from tools.testing import bucket_servers

RAY_START_TIMEOUT = 180.0  # generous: a loaded 2-core CI box takes ~20-30 s


@dataclass(frozen=True)
class Stores:
    """The two object stores and the environment that points clients at both."""

    s3: bucket_servers.Server
    gcs: bucket_servers.Server

    def env(self) -> dict[str, str]:
        return {**self.s3.env(), **self.gcs.env()}


@dataclass(frozen=True)
class RayHead:
    """A running Ray head: its dashboard address and the token it accepts."""

    address: str
    token: str
    pid: int
    temp_dir: Path


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    root = tmp_path_factory.mktemp("objectstores")
    with (
        bucket_servers.minio(root / "s3", bucket="ray") as s3,
        bucket_servers.fake_gcs(root / "gcs", bucket="ray") as gcs,
    ):
        yield Stores(s3, gcs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ready(address: str, token: str) -> bool:
    req = urllib.request.Request(
        f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies left for init do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    # We started `ray start --block` in its own session, so its process group is only Ray's.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    # A throwaway test cluster needs no graceful drain: do not wait Ray's long shutdown out.
    deadline = time.monotonic() + 5
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def ray_head(stores: Stores) -> Iterator[RayHead]:
    token = secrets.token_hex(32)
    # Ray puts unix sockets under its temp dir: keep the path short (sun_path is 108 bytes).
    temp_dir = Path(tempfile.mkdtemp(prefix="rpray"))
    port, dash = _free_port(), _free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **stores.env(),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray swaps 127.0.0.1 for the host's routable IP unless told it is a one-machine
        # "cluster" (the switch is named for Windows/macOS, but is read on every platform):
        # this keeps every Ray process on loopback.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # The job's `python` must be the venv's, where ray and the bucket clients live.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [
        str(Path(venv_bin) / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        "--num-cpus=1",
        f"--object-store-memory={100 * 1024 * 1024}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = open(temp_dir / "ray-start.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    address = f"http://127.0.0.1:{dash}"
    head = RayHead(address=address, token=token, pid=proc.pid, temp_dir=temp_dir)
    try:
        deadline = time.monotonic() + RAY_START_TIMEOUT
        while not _ready(address, token):
            if proc.poll() is not None:
                tail = (temp_dir / "ray-start.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"ray start exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray dashboard did not answer within {RAY_START_TIMEOUT:.0f}s")
            time.sleep(0.5)
        yield head
    finally:
        _stop_group(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass(frozen=True)
class Result:
    """What one `ray-platform submit` printed and returned."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """The `ray-platform submit: …` lines on stderr (failures must be exactly one)."""
        return [ln for ln in self.err.splitlines() if ln.startswith("ray-platform submit:")]


class Submit:
    """Runs `ray-platform submit …` (cli.main.main) in this process with a clean environment for
    the command."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self._mp = monkeypatch
        self._capsys = capsys

    def __call__(self, argv: list[str], env: dict[str, str] | None = None) -> Result:
        from cli.main import main

        for var in (
            "RAY_ADDRESS",
            "RAY_AUTH_TOKEN",
            "RAY_AUTH_MODE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "STORAGE_EMULATOR_HOST",
            "KUBECONFIG",
        ):
            self._mp.delenv(var, raising=False)
        for k, v in (env or {}).items():
            self._mp.setenv(k, v)
        self._capsys.readouterr()
        code = main(["submit", *argv])
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def terminal_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler for the test, whatever this run inherited: a shell starting it
    in the background (`cmd &`, as CI scripts do) leaves SIGINT ignored. Put back after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def run_submit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Submit:
    return Submit(monkeypatch, capsys)


def write_outputs(path: Path, **overrides: object) -> Path:
    """A stack-outputs JSON like `pulumi stack output --json` prints; None drops a key."""
    import json

    outputs: dict[str, object] = {
        "mode": "dev",
        "bucketUri": "s3://ray/ray/test",
        "runtimeEnv": json.dumps({"env_vars": {"GREETING": "hello from the stack"}}),
        "namespace": "ray",
        "rayClusterName": "ray",
        "rayAddress": "http://127.0.0.1:8265",
        "rayAuthMode": "token",
        "authTokenCommand": "kubectl -n ray get secret ray -o jsonpath='{.data.auth_token}'",
    }
    for k, v in overrides.items():
        if v is None:
            outputs.pop(k, None)
        else:
            outputs[k] = v
    path.write_text(json.dumps(outputs), encoding="utf-8")
    return path


def objects(server: bucket_servers.Server, prefix: str) -> dict[str, Any]:
    """Key → last-modified time of the objects under `prefix` in the server's bucket."""
    if server.kind == objectstore.MINIO:
        client = objectstore.s3_client(server.endpoint, server.credentials, server.region)
        listed = client.list_objects_v2(Bucket=server.bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: o["LastModified"] for o in listed}
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[import-untyped]

    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server.endpoint},
    )
    return {b.name: b.updated for b in client.list_blobs(server.bucket, prefix=prefix)}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return _free_port()
