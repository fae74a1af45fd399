"""Real object stores on loopback: MinIO (S3 API) and fake-gcs-server (GCS JSON API).

Both are built from Go modules by tools/build.py, run as child processes bound to 127.0.0.1 on a
free port, with their data in a directory the caller owns, and stopped by their pid::

    with objectstore.minio(tmp / "s3", bucket="ray") as s3:
        os.environ.update(s3.env())          # boto3 (and Ray inside) now reach it
    with objectstore.fake_gcs(tmp / "gcs", bucket="ray") as gcs:
        os.environ.update(gcs.env())         # google-cloud-storage now reaches it

`start_minio`/`start_fake_gcs` return a running server; `stop(server)` ends it (`grace=0`: killed
outright, as in a crash) and `restart_minio(server)` brings MinIO back as it was. Each server also
writes `server.json` (pid, endpoint, credentials) into its directory, so a later process can stop
it with `stop_dir(dir)`.

MinIO's command line, environment, credentials, readiness path and bucket creation are defined
once here (`minio_argv`, `minio_env`, `S3Credentials`, `MINIO_READY_PATH`, `create_s3_bucket`):
`start_minio` uses them for a standalone server, and the local control plane's `minio` component
(tools/localcluster/components.py) uses them for the one `tools/up` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tools.build import ensure

STATE_FILE = "server.json"
LOG_FILE = "server.log"
_START_TIMEOUT = 60.0
LOOPBACK = "127.0.0.1"
MINIO = "minio"
"""MinIO's tools.build name."""
MINIO_READY_PATH = "/minio/health/ready"
"""Answers 200 once MinIO serves requests."""
DEFAULT_REGION = "us-east-1"
"""Region S3 clients sign for (MinIO accepts its default)."""


class ObjectStoreError(RuntimeError):
    """A server could not be started or prepared; the message is one line meant for people."""


@dataclass(frozen=True)
class S3Credentials:
    """MinIO's root user and password, which S3 clients use as access key and secret key."""

    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> S3Credentials:
        """Fresh random credentials (MinIO wants >= 3 and >= 8 characters)."""
        return cls("rp" + secrets.token_hex(8), secrets.token_urlsafe(30))


def minio_argv(
    binary: Path, data: Path, port: int, console_port: int, *, host: str = LOOPBACK
) -> list[str]:
    """MinIO serving `data` on `host` (loopback, or a local node's bridge address so pods reach
    it): the S3 API on `port`, its console on `console_port` (always loopback)."""
    return [
        str(binary),
        "server",
        str(data),
        f"--address={host}:{port}",
        f"--console-address={LOOPBACK}:{console_port}",
        "--quiet",
    ]


def minio_env(credentials: S3Credentials) -> dict[str, str]:
    """MinIO's environment: its root credentials, and nothing that calls out to the internet."""
    return {
        "MINIO_ROOT_USER": credentials.access_key,
        "MINIO_ROOT_PASSWORD": credentials.secret_key,
        # No phone-home and no update checks on a machine without internet.
        "MINIO_UPDATE": "off",
        "MINIO_CALLHOME_ENABLE": "off",
        "MINIO_BROWSER": "off",
    }


def s3_client_env(
    endpoint: str, credentials: S3Credentials, region: str = DEFAULT_REGION
) -> dict[str, str]:
    """Environment that points boto3 (and Ray inside) at `endpoint` with `credentials`."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # Keep boto3 off ~/.aws and the instance metadata service.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_client(endpoint: str, credentials: S3Credentials, region: str = DEFAULT_REGION) -> Any:
    """A boto3 S3 client for `endpoint` (boto3 is untyped)."""
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        region_name=region,
    )


def create_s3_bucket(
    endpoint: str, credentials: S3Credentials, bucket: str, region: str = DEFAULT_REGION
) -> None:
    """Create `bucket` (already owning it is fine: a restarted server keeps its data)."""
    client = s3_client(endpoint, credentials, region)
    try:
        client.create_bucket(Bucket=bucket)
    except Exception as e:
        code = (getattr(e, "response", None) or {}).get("Error", {}).get("Code")
        if code == "BucketAlreadyOwnedByYou":
            return
        raise ObjectStoreError(f"minio: cannot create bucket {bucket}: {e}") from None


@dataclass(frozen=True)
class Server:
    """A running object store on loopback."""

    kind: str
    """`minio` or `fake-gcs-server`."""
    pid: int
    """Process id (the server is the leader of its own process group)."""
    endpoint: str
    """`http://127.0.0.1:<port>`."""
    bucket: str
    """The bucket created at start."""
    directory: str
    """Data, log and state directory."""
    access_key: str = ""
    """S3 access key (MinIO root user); empty for fake-gcs-server."""
    secret_key: str = ""
    """S3 secret key (MinIO root password); empty for fake-gcs-server."""
    region: str = DEFAULT_REGION
    """Region S3 clients should sign for (MinIO accepts its default)."""

    @property
    def bucket_uri(self) -> str:
        """`s3://bucket` or `gs://bucket`."""
        return f"{'s3' if self.kind == MINIO else 'gs'}://{self.bucket}"

    @property
    def credentials(self) -> S3Credentials:
        """The S3 credentials (empty for fake-gcs-server)."""
        return S3Credentials(self.access_key, self.secret_key)

    def env(self) -> dict[str, str]:
        """Environment that points the standard clients (boto3, google-cloud-storage) here."""
        if self.kind == MINIO:
            return s3_client_env(self.endpoint, self.credentials, self.region)
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_CLOUD_PROJECT": "test"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def _spawn(cmd: list[str], directory: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(directory / LOG_FILE, "ab")  # noqa: SIM115 - the child keeps it open
    try:
        # Own process group: stop() signals exactly this server and whatever it forked.
        return subprocess.Popen(
            cmd,
            cwd=directory,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _log_tail(directory: Path) -> str:
    try:
        lines = (directory / LOG_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def _wait_http(proc: subprocess.Popen[bytes], url: str, kind: str, directory: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ObjectStoreError(
                f"{kind} exited with {proc.returncode} at start: {_log_tail(directory)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    _kill(proc.pid)
    raise ObjectStoreError(f"{kind} did not answer {url} within {_START_TIMEOUT:.0f}s")


def _write_state(server: Server) -> None:
    path = Path(server.directory) / STATE_FILE
    path.write_text(json.dumps(asdict(server), indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)  # it holds the credentials


def _run_minio(directory: Path, port: int, credentials: S3Credentials) -> subprocess.Popen[bytes]:
    """MinIO serving `directory`/data on `port`, answering once this returns."""
    binary = ensure([MINIO])[MINIO]
    data = directory / "data"
    data.mkdir(exist_ok=True)
    proc = _spawn(minio_argv(binary, data, port, _free_port()), directory, minio_env(credentials))
    _wait_http(proc, f"http://{LOOPBACK}:{port}{MINIO_READY_PATH}", MINIO, directory)
    return proc


def start_minio(directory: Path, bucket: str = "ray") -> Server:
    """Start MinIO on a free loopback port with fresh credentials and `bucket` created."""
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    credentials = S3Credentials.generate()
    proc = _run_minio(directory, port, credentials)
    server = Server(
        kind=MINIO,
        pid=proc.pid,
        endpoint=f"http://{LOOPBACK}:{port}",
        bucket=bucket,
        directory=str(directory),
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
    )
    _write_state(server)
    try:
        create_s3_bucket(server.endpoint, credentials, bucket, server.region)
    except Exception:
        stop(server)
        raise
    return server


def restart_minio(server: Server) -> Server:
    """Start a stopped MinIO again as it was: same port, credentials and data (its buckets and
    objects), as a store comes back after an outage. Returns it with its new pid."""
    if server.kind != MINIO:
        raise ObjectStoreError(f"restart_minio: {server.kind} is not {MINIO}")
    port = int(server.endpoint.rsplit(":", 1)[1])
    proc = _run_minio(Path(server.directory), port, server.credentials)
    restarted = replace(server, pid=proc.pid)
    _write_state(restarted)
    return restarted


def start_fake_gcs(directory: Path, bucket: str = "ray") -> Server:
    """Start fake-gcs-server (HTTP, filesystem backend) on a free loopback port with `bucket`."""
    binary = ensure(["fake-gcs-server"])["fake-gcs-server"]
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [
        str(binary),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "filesystem",
        "-filesystem-root",
        str(directory / "data"),
        # Upload sessions and media links must point back here, not at storage.googleapis.com.
        "-public-host",
        f"127.0.0.1:{port}",
        "-external-url",
        endpoint,
        "-log-level",
        "warn",
    ]
    proc = _spawn(cmd, directory, {})
    _wait_http(proc, f"{endpoint}/storage/v1/b", "fake-gcs-server", directory)
    server = Server(
        kind="fake-gcs-server",
        pid=proc.pid,
        endpoint=endpoint,
        bucket=bucket,
        directory=str(directory),
    )
    _write_state(server)
    req = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project=test",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10):
            pass
    except OSError as e:
        stop(server)
        raise ObjectStoreError(f"fake-gcs-server: cannot create bucket {bucket}: {e}") from None
    return server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def stop(server: Server, grace: float = 10.0) -> None:
    """Stop the server (its data directory stays); `grace=0` kills it outright, as a crash
    would."""
    _kill(server.pid, grace)
    with contextlib.suppress(FileNotFoundError):
        (Path(server.directory) / STATE_FILE).unlink()


def stop_dir(directory: Path) -> bool:
    """Stop the server whose state is in `directory`; False if none was recorded there."""
    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    stop(Server(**state))
    return True


@contextlib.contextmanager
def minio(directory: Path, bucket: str = "ray") -> Iterator[Server]:
    """MinIO for the length of a `with` block."""
    server = start_minio(directory, bucket)
    try:
        yield server
    finally:
        stop(server)


@contextlib.contextmanager
def fake_gcs(directory: Path, bucket: str = "ray") -> Iterator[Server]:
    """fake-gcs-server for the length of a `with` block."""
    server = start_fake_gcs(directory, bucket)
    try:
        yield server
    finally:
        stop(server)
