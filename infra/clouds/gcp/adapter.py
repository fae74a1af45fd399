"""GCP adapter: GKE lookups and checks, then its concerns composed into the StorageWiring:
Filestore (`filestore.py`), the GCS bucket (`gcs.py`), Workload Identity
(`workload_identity.py`), GCS FUSE (`fuse.py`), the app image's Artifact Registry repository in
prod (`registry.py`); the cluster checks are `checks.py`."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.clouds.adapter import (
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
    WiringPart,
    compose,
    raise_problems,
)
from infra.clouds.gcp import lookup
from infra.clouds.gcp.checks import gke_problems
from infra.clouds.gcp.filestore import shared_filesystem
from infra.clouds.gcp.fuse import fuse_mount
from infra.clouds.gcp.gcs import artifact_bucket
from infra.clouds.gcp.lookup import GkeCluster, LiveCrd, kubeconfig, lookup_cluster
from infra.clouds.gcp.registry import image_repository
from infra.clouds.gcp.settings import GcpSettings, region_of
from infra.clouds.gcp.workload_identity import metadata_server_egress, workload_identity
from infra.settings import Settings

_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")


def gcp_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """GCP label rules: keys and values lowercase letters, digits, `_` and `-` (no `/`), at
    most 63; keys start with a letter."""
    out = {}
    for key, value in labels.items():
        k = _LABEL_INVALID.sub("_", key.lower())[:63]
        if not k[:1].isalpha():
            raise ValueError(f"GCP label key {key!r} must start with a letter")
        out[k] = _LABEL_INVALID.sub("-", value.lower())[:63]
    return out


class GcpAdapter(CloudAdapter):
    """GKE + Filestore + GCS + Workload Identity (+ GCS FUSE, + Artifact Registry in prod)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gcp = block = self.block(GcpSettings)
        self.provider = gcp.Provider("gcp", project=block.project, region=region_of(block.location))
        bucket_on = settings.storage.artifact_bucket.enabled
        self.cluster: GkeCluster = lookup_cluster(
            block.cluster_name,
            block.location,
            block.project,
            need_agent=bucket_on and settings.stateful.customer_managed_keys,
            provider=self.provider,
        )
        raise_problems(gke_problems(self.cluster, settings, self._live_crd()))

    def _live_crd(self) -> LiveCrd | None:
        """The Ray add-on's RayCluster CRD, read only where the checks need it: `install:
        managed` on a cluster that runs the add-on (a call to its API server, not a lookup the
        provider makes)."""
        if self.settings.operator.install != "managed" or not self.cluster.ray_operator_addon:
            return None
        return lookup.live_raycluster_crd(self.cluster)

    def egress_allowances(self) -> tuple[Mapping[str, object], ...]:
        return metadata_server_egress()

    def kubernetes_provider(self) -> k8s.Provider:
        return k8s.Provider("gke", kubeconfig=kubeconfig(self.cluster))

    def tags(self) -> Mapping[str, str]:
        """GCP labels: the same facts as the other clouds' tags, keys without `/`."""
        s = self.settings
        return gcp_labels(
            {
                "ray-platform_project": s.project,
                "ray-platform_stack": s.stack,
                "ray-platform_mode": s.mode,
                "managed-by": "pulumi",
            }
        )

    def storage_and_identity(self, target: KubernetesTarget) -> CloudStorage:
        """Filestore, the bucket, the identity granted on it, FUSE mounting it, the image
        repository (prod): in this order (the stack's outputs and Ray's dependencies keep it)."""
        settings, cluster, block = self.settings, self.cluster, self.gcp
        storage, labels = settings.storage, self.tags()
        parts = [
            # The project, for Google's client libraries in Ray code.
            WiringPart(
                wiring={"env": (("GOOGLE_CLOUD_PROJECT", block.project),)},
                outputs={"gcpProject": block.project},
            )
        ]
        if storage.shared_filesystem.enabled:
            parts.append(
                shared_filesystem(
                    settings, block, cluster, labels=labels, provider=self.provider, target=target
                )
            )
        bucket = None
        if storage.artifact_bucket.enabled:
            bucket = artifact_bucket(
                settings, block, cluster, labels=labels, provider=self.provider
            )
            parts.append(bucket.part)
        parts.append(
            workload_identity(
                settings,
                block,
                cluster,
                bucket_name=bucket.name if bucket else None,
                provider=self.provider,
                target=target,
            )
        )
        if block.gcs_fuse.enabled and bucket is not None:
            parts.append(fuse_mount(bucket.name, settings.bucket_prefix, block.gcs_fuse))
        if settings.stateful.image_repository:
            parts.append(
                image_repository(settings, block, cluster, labels=labels, provider=self.provider)
            )
        return compose(*parts)
