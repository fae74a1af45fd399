"""GCS FUSE on GKE: the stack's bucket prefix mounted in every Ray pod through GKE's CSI driver
and its injected sidecar. No resource of its own: volumes and annotations on the Ray pods."""

from __future__ import annotations

from typing import Any

import pulumi

from components.kuberay.image import RAY_GID, RAY_UID
from infra.clouds.adapter import WiringPart
from infra.clouds.gcp.settings import GcsFuseSettings

FUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
FUSE_VOLUME = "gcs-fuse"


def fuse_volume(bucket: pulumi.Input[str], prefix: str, fuse: GcsFuseSettings) -> dict[str, Any]:
    """The CSI ephemeral volume: only the stack's prefix, owned by the Ray user and group."""
    attributes: dict[str, Any] = {
        "bucketName": bucket,
        # implicit-dirs: prefixes written by other clients (gsutil, Ray) show up as directories.
        "mountOptions": f"uid={RAY_UID},gid={RAY_GID},implicit-dirs,only-dir={prefix}",
    }
    optional = {
        "fileCacheCapacity": fuse.file_cache_capacity,
        "metadataCacheTTLSeconds": fuse.metadata_cache_ttl_seconds,
        "metadataStatCacheCapacity": fuse.metadata_stat_cache_capacity,
        "metadataTypeCacheCapacity": fuse.metadata_type_cache_capacity,
    }
    attributes.update({k: str(v) for k, v in optional.items() if v is not None})
    return {"name": FUSE_VOLUME, "csi": {"driver": FUSE_DRIVER, "volumeAttributes": attributes}}


def fuse_annotations(fuse: GcsFuseSettings) -> dict[str, str]:
    """`gke-gcsfuse/volumes` has GKE inject the sidecar; the rest sizes it."""
    sidecar = fuse.sidecar
    sizes = {
        "cpu-limit": sidecar.cpu_limit,
        "cpu-request": sidecar.cpu_request,
        "memory-limit": sidecar.memory_limit,
        "memory-request": sidecar.memory_request,
        "ephemeral-storage-limit": sidecar.ephemeral_storage_limit,
        "ephemeral-storage-request": sidecar.ephemeral_storage_request,
    }
    return {
        "gke-gcsfuse/volumes": "true",
        **{f"gke-gcsfuse/{k}": v for k, v in sizes.items() if v is not None},
    }


def fuse_mount(bucket_name: pulumi.Input[str], prefix: str, fuse: GcsFuseSettings) -> WiringPart:
    """The bucket's `prefix` at `fuse.mount_path` in every Ray container. (The cluster's driver
    and version are `checks.gke_problems`'s to refuse.)"""
    return WiringPart(
        wiring={
            "volumes": (fuse_volume(bucket_name, prefix, fuse),),
            "volume_mounts": ({"name": FUSE_VOLUME, "mountPath": fuse.mount_path},),
            "pod_annotations": fuse_annotations(fuse),
        },
        outputs={"bucketMountPath": fuse.mount_path},
    )
