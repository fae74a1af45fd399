"""The `ray-platform:local` block: which kubeconfig, and the node directory behind the volume."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from infra.settings.errors import message
from infra.settings.models import CloudSettings, Model, Settings
from infra.settings.values import MountPath

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# A registry host as image references spell it: a DNS name or IPv4 address, or [IPv6], and a port.
_REGISTRY_HOST = re.compile(
    rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::([0-9]{{1,5}}))?$"
)
# The repository path: lowercase components joined by '/' (the OCI distribution spec's).
_REPOSITORY_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


def _image_repository(v: str) -> str:
    """`host[:port]/path`: where the local node's registry takes the app image, without a tag or
    digest (the build adds them)."""
    example = "e.g. 127.0.0.1:5000/ray-platform/ray-app"
    host, slash, path = v.partition("/")
    match = _REGISTRY_HOST.match(host)
    if not slash or not path or match is None:
        raise ValueError(f"is not a registry host and repository path, {example}")
    port = match.group(1)
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"has port {port}, outside 1-65535")
    # Docker reads a first component without '.' or ':' (and not localhost) as a Docker Hub
    # namespace, not a registry: `registry/app` would be pulled from docker.io.
    if "." not in host and ":" not in host and host != "localhost":
        raise ValueError(
            f"does not start with a registry host (one with '.' or ':', or localhost): {host!r} "
            f"would be read as a Docker Hub namespace, {example}"
        )
    if "@" in path or ":" in path:
        raise ValueError("must name the repository without a tag or digest (the build adds them)")
    if not _REPOSITORY_PATH.match(path) or len(v) > 255:
        raise ValueError(
            f"has a repository path that is not lowercase components joined by '/', {example}"
        )
    return v


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
    api_server_port: int = Field(6443, alias="apiServerPort", ge=1, le=65535)
    """The port the API server's endpoints listen on (the `kubernetes` Service says 443, but a
    NetworkPolicy matches the port after the Service's translation): with
    kubernetes.networkPolicy.restrictEgress the Ray pods may reach it, which KubeRay's
    autoscaler sidecar must. kind and kubeadm use 6443 (the default), minikube 8443; tools/up sets
    its own node's. The rule is by port, to any address (the program knows no address)."""
    image_repository: str | None = Field(None, alias="imageRepository")
    """Where the app image is pushed on the local node's registry, `host[:port]/path` without a
    tag or digest (e.g. 127.0.0.1:5000/ray-platform/ray-app): no resource, only exported as the
    stack output imageRepository for `ray-platform image build`. Tools that run the registry set
    it in their working copy of the stack file."""

    @field_validator("image_repository")
    @classmethod
    def _repository(cls, v: str | None) -> str | None:
        return None if v is None else _image_repository(v)

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
