"""The `ray-platform:local` block: which kubeconfig, and the node directory behind the volume."""

from __future__ import annotations

from pydantic import Field

from infra.settings.errors import message
from infra.settings.models import CloudSettings, Settings
from infra.settings.values import MountPath


class LocalSettings(CloudSettings):
    """`ray-platform:local`."""

    kubeconfig: str | None = None
    """A kubeconfig path; default: $KUBECONFIG or ~/.kube/config."""
    context: str | None = None
    host_path: MountPath = Field("/var/lib/ray-platform/shared", alias="hostPath")
    """The node directory that backs the shared volume."""

    def rules(self, settings: Settings) -> list[str]:
        if settings.storage.artifact_bucket.enabled:
            return [
                message(
                    "storage.artifactBucket.enabled",
                    True,
                    "has no bucket service on cloud local; set it to false",
                )
            ]
        return []
