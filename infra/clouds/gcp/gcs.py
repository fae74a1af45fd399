"""GKE's artifact bucket: a GCS bucket for the stack's prefix (its name feeds the Workload
Identity grants and the FUSE mount)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.gcp.gcs_bucket import GcsBucket, GcsBucketArgs
from components.wiring import WORKING_DIRS
from infra.clouds.adapter import WiringPart, with_provider
from infra.clouds.gcp.lookup import GkeCluster
from infra.clouds.gcp.settings import GcpSettings, region_of
from infra.settings import Settings


@dataclass(frozen=True)
class ArtifactBucket:
    name: pulumi.Output[str]
    """What the identity grants on and FUSE mounts: the bucket, known once it exists."""
    part: WiringPart


def artifact_bucket(
    settings: Settings,
    block: GcpSettings,
    cluster: GkeCluster,
    *,
    labels: Mapping[str, str],
    provider: gcp.Provider,
) -> ArtifactBucket:
    """The bucket, in the setting's location or the cluster's region; Ray gets `gs://<bucket>/
    <prefix>`."""
    storage, stateful, b = settings.storage, settings.stateful, block.bucket
    prefix = settings.bucket_prefix
    bucket = GcsBucket(
        "artifacts",
        GcsBucketArgs(
            project=block.project,
            location=b.location or region_of(cluster.location),
            noncurrent_version_days=storage.artifact_bucket.noncurrent_version_days,
            expiring_prefixes={
                f"{prefix}/{WORKING_DIRS}/": storage.artifact_bucket.working_dir_expiry_days
            },
            soft_delete_days=b.soft_delete_days,
            abort_multipart_days=b.abort_multipart_days,
            service_agent=cluster.storage_service_agent,
            force_destroy=stateful.force_destroy,
            protect=stateful.protect,
            labels=labels,
        ),
        opts=with_provider(provider),
    )
    uri = bucket.bucket_name.apply(lambda name: f"gs://{name}/{prefix}")
    return ArtifactBucket(
        bucket.bucket_name, WiringPart(wiring={"bucket_uri": uri}, outputs={"bucketUri": uri})
    )
