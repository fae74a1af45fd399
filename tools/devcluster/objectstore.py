"""MinIO as the project runs it, defined once: its command line, environment, credentials,
readiness path and bucket creation (`minio_argv`, `minio_env`, `S3Credentials`,
`MINIO_READY_PATH`, `create_s3_bucket`), and the S3 client settings that point boto3 (and Ray
inside) at it (`s3_client_env`, `s3_client`).

The local control plane's `minio` component (tools/devcluster/localcluster/components.py) and the
submit tests' standalone servers (tools/testing/bucket_servers.py) both build on these, and both
run MinIO through the one process code, tools/devcluster/localcluster/process.py. The binary is
built from a Go module by tools/build.py.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
