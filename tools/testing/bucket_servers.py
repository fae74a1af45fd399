"""Standalone object stores on loopback for the submit tests: MinIO (S3 API) and fake-gcs-server
(GCS JSON API), each on a free port with its data, log (`logs/<kind>.log`) and working directory
in a directory the caller owns::

    with bucket_servers.minio(tmp / "s3", bucket="ray") as s3:
        os.environ.update(s3.env())          # boto3 (and Ray inside) now reach it
    with bucket_servers.fake_gcs(tmp / "gcs", bucket="ray") as gcs:
        os.environ.update(gcs.env())         # google-cloud-storage now reaches it

They run through the local cluster's process code (tools/devcluster/localcluster/process.py: spawned
detached with a log, probed until ready, stopped by recorded PID and command line), so there is
one process runner in tools/. `start_minio`/`start_fake_gcs` return a running server; `stop(server,
grace=0)` kills it outright, as a crash would, and `restart_minio(server)` brings MinIO back as it
was (same port, credentials and data), as a store comes back after an outage.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tools.build import ensure
from tools.devcluster import objectstore
from tools.devcluster.localcluster import process
from tools.devcluster.localcluster.state import Layout, LocalClusterError, ProcessRecord
from tools.devcluster.objectstore import (
    DEFAULT_REGION,
    LOOPBACK,
    MINIO,
    ObjectStoreError,
    S3Credentials,
)

FAKE_GCS = "fake-gcs-server"
"""fake-gcs-server's tools.build name."""
FAKE_GCS_READY_PATH = "/storage/v1/b"
"""Lists the buckets once fake-gcs-server serves requests."""


@dataclass(frozen=True)
class Server:
    """A running object store on loopback."""

    kind: str
    """`minio` or `fake-gcs-server`."""
    process: ProcessRecord
    """Its PID and exact command line: what `stop` checks before it signals anything."""
    endpoint: str
    """`http://127.0.0.1:<port>`."""
    bucket: str
    """The bucket created at start."""
    directory: Path
    """Data, log and working directory."""
    access_key: str = ""
    """S3 access key (MinIO root user); empty for fake-gcs-server."""
    secret_key: str = ""
    """S3 secret key (MinIO root password); empty for fake-gcs-server."""
    region: str = DEFAULT_REGION
    """Region S3 clients should sign for (MinIO accepts its default)."""

    @property
    def credentials(self) -> S3Credentials:
        """The S3 credentials (empty for fake-gcs-server)."""
        return S3Credentials(self.access_key, self.secret_key)

    def env(self) -> dict[str, str]:
        """Environment that points the standard clients (boto3, google-cloud-storage) here."""
        if self.kind == MINIO:
            return objectstore.s3_client_env(self.endpoint, self.credentials, self.region)
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_CLOUD_PROJECT": "test"}


def _run(directory: Path, argv: list[str], env: Mapping[str, str], ready_url: str) -> ProcessRecord:
    """Start `argv` (its kind is its binary's name) and wait until `ready_url` answers."""
    name = Path(argv[0]).name
    where = Layout(directory)
    child = process.spawn(where, name, argv, env)
    record = ProcessRecord(name, child.pid, argv, [argv[0]])

    def answers() -> bool:
        # Any answer below 500 is a server that serves requests (fake-gcs-server has no probe).
        status = process.http_status(ready_url)
        return status is not None and status < 500

    try:
        process.await_ready(where, name, name, answers, [(name, child)])
    except LocalClusterError:
        process.stop(record, timeout=0)
        raise
    return record


def _run_minio(
    directory: Path, port: int, console_port: int, creds: S3Credentials
) -> ProcessRecord:
    binary = ensure([MINIO])[MINIO]
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    argv = objectstore.minio_argv(binary, data, port, console_port)
    ready = f"http://{LOOPBACK}:{port}{objectstore.MINIO_READY_PATH}"
    return _run(directory, argv, objectstore.minio_env(creds), ready)


def start_minio(directory: Path, bucket: str = "ray") -> Server:
    """Start MinIO on a free loopback port with fresh credentials and `bucket` created."""
    ports = process.free_ports(["minio", "minio-console"])
    credentials = S3Credentials.generate()
    record = _run_minio(directory, ports["minio"], ports["minio-console"], credentials)
    server = Server(
        kind=MINIO,
        process=record,
        endpoint=f"http://{LOOPBACK}:{ports['minio']}",
        bucket=bucket,
        directory=directory,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
    )
    try:
        objectstore.create_s3_bucket(server.endpoint, credentials, bucket, server.region)
    except Exception:
        stop(server)
        raise
    return server


def restart_minio(server: Server) -> Server:
    """Start a stopped MinIO again as it was: same port, credentials and data (its buckets and
    objects). Returns it with its new process record."""
    if server.kind != MINIO:
        raise ObjectStoreError(f"restart_minio: {server.kind} is not {MINIO}")
    # The console port is not recorded apart: it is the one in the recorded command line.
    console = next(a for a in server.process.argv if a.startswith("--console-address="))
    port = int(server.endpoint.rsplit(":", 1)[1])
    record = _run_minio(server.directory, port, int(console.rsplit(":", 1)[1]), server.credentials)
    return replace(server, process=record)


def start_fake_gcs(directory: Path, bucket: str = "ray") -> Server:
    """Start fake-gcs-server (HTTP, filesystem backend) on a free loopback port with `bucket`."""
    binary = ensure([FAKE_GCS])[FAKE_GCS]
    port = process.free_ports([FAKE_GCS])[FAKE_GCS]
    endpoint = f"http://{LOOPBACK}:{port}"
    argv = [
        str(binary),
        *("-scheme", "http", "-host", LOOPBACK, "-port", str(port)),
        *("-backend", "filesystem", "-filesystem-root", str(directory / "data")),
        # Upload sessions and media links must point back here, not at storage.googleapis.com.
        *("-public-host", f"{LOOPBACK}:{port}", "-external-url", endpoint),
        *("-log-level", "warn"),
    ]
    record = _run(directory, argv, {}, endpoint + FAKE_GCS_READY_PATH)
    server = Server(FAKE_GCS, record, endpoint, bucket, directory)
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
        raise ObjectStoreError(f"{FAKE_GCS}: cannot create bucket {bucket}: {e}") from None
    return server


def stop(server: Server, grace: float = process.STOP_TIMEOUT) -> None:
    """Stop the server (its data directory stays); `grace=0` kills it outright, as a crash
    would."""
    process.stop(server.process, timeout=grace)


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
