"""The `ray-platform:local` block: which kubeconfig, and the node directory behind the volume."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from infra.settings.errors import message
from infra.settings.models import CloudSettings, Model, Settings
from infra.settings.values import MountPath

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ObjectStoreSettings(Model):
    """An S3-compatible server (MinIO) standing in for S3: the local control plane starts one
    (tools/up sets these), or name the one you run on kind/minikube."""

    endpoint: str
    """Its URL as Ray pods (and `ray-platform submit`) reach it, e.g. http://minio.minio:9000."""
    bucket: str
    """The bucket the stack's prefix lives in (it must exist)."""
    access_key_id: str = Field(alias="accessKeyId")
    """The access key's id (not a secret; the secret key is `secretAccessKey`)."""
    secret_access_key: SecretStr = Field(alias="secretAccessKey")
    """Set it as a secret: pulumi config set --path --secret
    'ray-platform:local.objectStore.secretAccessKey' …"""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", v):
            raise ValueError("is not an http(s)://host[:port] URL")
        return v.rstrip("/")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v):
            raise ValueError("is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
        return v


class LocalSettings(CloudSettings):
    """`ray-platform:local`."""

    kubeconfig: str | None = None
    """A kubeconfig path, stored in the provider's state as is (a later run needs the file
    there); default: $KUBECONFIG or ~/.kube/config of each run, nothing stored."""
    context: str | None = None
    """A context of that kubeconfig; default: its current context."""
    host_path: MountPath = Field("/var/lib/ray-platform/shared", alias="hostPath")
    """The node directory that backs the shared volume."""
    object_store: ObjectStoreSettings | None = Field(None, alias="objectStore")
    """The S3-compatible bucket behind `storage.artifactBucket` on this stack."""

    def rules(self, settings: Settings) -> list[str]:
        if settings.storage.artifact_bucket.enabled and self.object_store is None:
            return [
                message(
                    "storage.artifactBucket.enabled",
                    True,
                    "needs ray-platform:local.objectStore (an S3-compatible server such as "
                    "MinIO; tools/up starts one) or false",
                )
            ]
        return []
