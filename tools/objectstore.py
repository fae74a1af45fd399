"""Real object stores on loopback: MinIO (S3 API) and fake-gcs-server (GCS JSON API).

Both are built from Go modules by tools/build.py, run as child processes bound to 127.0.0.1 on a
free port, with their data in a directory the caller owns, and stopped by their pid::

    with objectstore.minio(tmp / "s3", bucket="ray") as s3:
        os.environ.update(s3.env())          # boto3 (and Ray inside) now reach it
    with objectstore.fake_gcs(tmp / "gcs", bucket="ray") as gcs:
        os.environ.update(gcs.env())         # google-cloud-storage now reaches it

`start_minio`/`start_fake_gcs` return a running server; `stop(server)` ends it. Each server also
writes `server.json` (pid, endpoint, credentials) into its directory, so a later process (e.g.
`tools/up down`) can stop it with `stop_dir(dir)`.
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
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.build import ensure

STATE_FILE = "server.json"
LOG_FILE = "server.log"
_START_TIMEOUT = 60.0


class ObjectStoreError(RuntimeError):
    """A server could not be started or prepared; the message is one line meant for people."""


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
    region: str = "us-east-1"
    """Region S3 clients should sign for (MinIO accepts its default)."""

    @property
    def bucket_uri(self) -> str:
        """`s3://bucket` or `gs://bucket`."""
        return f"{'s3' if self.kind == 'minio' else 'gs'}://{self.bucket}"

    def env(self) -> dict[str, str]:
        """Environment that points the standard clients (boto3, google-cloud-storage) here."""
        if self.kind == "minio":
            return {
                "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                # Keep boto3 off ~/.aws and the instance metadata service.
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_CLOUD_PROJECT": "test"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
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


def start_minio(directory: Path, bucket: str = "ray") -> Server:
    """Start MinIO on a free loopback port with fresh credentials and `bucket` created."""
    binary = ensure(["minio"])["minio"]
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    port, console = _free_port(), _free_port()
    access_key = "rp" + secrets.token_hex(8)
    secret_key = secrets.token_urlsafe(30)
    env = {
        "MINIO_ROOT_USER": access_key,
        "MINIO_ROOT_PASSWORD": secret_key,
        # No phone-home and no update checks on a machine without internet.
        "MINIO_UPDATE": "off",
        "MINIO_CALLHOME_ENABLE": "off",
        "MINIO_BROWSER": "off",
    }
    cmd = [
        str(binary),
        "server",
        str(data),
        "--address",
        f"127.0.0.1:{port}",
        "--console-address",
        f"127.0.0.1:{console}",
        "--quiet",
    ]
    proc = _spawn(cmd, directory, env)
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(proc, f"{endpoint}/minio/health/ready", "minio", directory)
    server = Server(
        kind="minio",
        pid=proc.pid,
        endpoint=endpoint,
        bucket=bucket,
        directory=str(directory),
        access_key=access_key,
        secret_key=secret_key,
    )
    _write_state(server)
    try:
        _create_s3_bucket(server)
    except Exception:
        stop(server)
        raise
    return server


def _create_s3_bucket(server: Server) -> None:
    import boto3  # type: ignore[import-untyped]

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )
    try:
        client.create_bucket(Bucket=server.bucket)
    except Exception as e:
        raise ObjectStoreError(f"minio: cannot create bucket {server.bucket}: {e}") from None


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


def stop(server: Server) -> None:
    """Stop the server (its data directory stays)."""
    _kill(server.pid)
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
