"""GKE's shared file system: a Filestore share on the cluster's network, the Job that hands its
root to the Ray user, and the PersistentVolume + claim every Ray pod mounts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.gcp.filestore_share import FilestoreBackupArgs, FilestoreShare, FilestoreShareArgs
from components.kuberay.image import RAY_GID, RAY_UID
from components.kubernetes.labels import stack_labels
from components.kubernetes.shared_dir_owner import (
    SharedDirOwner,
    SharedDirOwnerArgs,
    wait_for_shared_dir,
)
from components.kubernetes.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import SHARED_VOLUME
from infra.clouds.adapter import SHARED_CLAIM, KubernetesTarget, WiringPart, with_provider
from infra.clouds.gcp.lookup import GkeCluster, filestore_network
from infra.clouds.gcp.settings import GcpSettings, is_zone, region_of
from infra.settings import Settings

FILESTORE_DRIVER = "filestore.csi.storage.gke.io"
_ID_INVALID = re.compile(r"[^a-z0-9-]+")


def backup_ids(stack: str) -> str:
    """The Backup and DR ids of a stack's Filestore backups: `ray-<stack>-shared-fs`, within
    the ids' rules (lowercase letters, digits, '-'; a letter first, at most 63)."""
    middle = _ID_INVALID.sub("-", stack.lower()).strip("-")
    return f"ray-{middle}"[:53].rstrip("-") + "-shared-fs"


def filestore_location(block: GcpSettings, cluster: GkeCluster) -> str | None:
    """The regional tier takes the region; the zonal tiers a zone: the setting, or a zonal
    cluster's own zone. Never picked from the node zones: adding one would move (replace) the
    instance. None when a zonal tier on a regional cluster names no zone (`gke_problems` says so,
    naming the node zones)."""
    fs = block.filestore
    if fs.tier == "REGIONAL":
        return region_of(cluster.location)
    if fs.zone is not None:
        return fs.zone
    if is_zone(cluster.location):
        return cluster.location
    return None


def shared_filesystem(
    settings: Settings,
    block: GcpSettings,
    cluster: GkeCluster,
    *,
    labels: Mapping[str, str],
    provider: gcp.Provider,
    target: KubernetesTarget,
) -> WiringPart:
    """The share, its ownership Job and the claim; Ray pods wait until the share is writable."""
    storage, stateful = settings.storage, settings.stateful
    location = filestore_location(block, cluster)
    assert location is not None, "gke_problems refuses a zonal tier without a zone"
    network, connect_mode = filestore_network(cluster)
    share = FilestoreShare(
        "shared-fs",
        FilestoreShareArgs(
            project=block.project,
            location=location,
            tier=block.filestore.tier,
            capacity_gib=block.filestore.capacity,
            network=network,
            connect_mode=connect_mode,
            protect=stateful.protect,
            labels=labels,
            backup=(
                FilestoreBackupArgs(
                    region=region_of(location),
                    ids=backup_ids(settings.stack),
                    retention_days=block.filestore.backup.retention_days,
                    window_start_hour_utc=block.filestore.backup.window_start_hour_utc,
                )
                if stateful.backups
                else None
            ),
        ),
        opts=with_provider(provider),
    )
    outputs: dict[str, pulumi.Input[str]] = {}
    if share.backup_vault_id is not None:
        outputs["fileSystemBackupVault"] = share.backup_vault_id
    path = f"/{share.share_name}"
    # The new share's root is root's (755): a one-shot root Job outside Ray's namespace hands it
    # to the Ray user; Ray pods wait until it is writable.
    SharedDirOwner(
        "shared-owner",
        SharedDirOwnerArgs(
            namespace=f"{target.namespace}-prep",
            pod_security="baseline",
            image=settings.ray.image,
            source={"nfs": {"server": share.ip_address, "path": path}},
            uid=RAY_UID,
            gid=RAY_GID,
        ),
        opts=pulumi.ResourceOptions(providers=[target.provider]),
    )
    source: dict[str, Any]
    if cluster.filestore_driver:
        share_name = share.share_name
        source = {
            "csi": {
                "driver": FILESTORE_DRIVER,
                "volumeHandle": share.instance_name.apply(
                    lambda n: f"modeInstance/{location}/{n}/{share_name}"
                ),
                "volumeAttributes": {"ip": share.ip_address, "volume": share.share_name},
            }
        }
    else:
        # Without the Filestore CSI add-on the kubelet mounts the share as plain NFS.
        source = {"nfs": {"server": share.ip_address, "path": path}}
    volume = SharedVolume(
        SHARED_VOLUME,
        SharedVolumeArgs(
            namespace=target.namespace,
            claim_name=SHARED_CLAIM,
            source=source,
            capacity=f"{block.filestore.capacity}Gi",
            labels=stack_labels(settings.stack),
        ),
        opts=target.component_opts(),
    )
    mount_path = storage.shared_filesystem.mount_path
    outputs["fileSystemId"] = share.instance_id
    outputs["sharedMountPath"] = mount_path
    return WiringPart(
        wiring={
            "shared_claim_name": volume.claim_name,
            "shared_mount_path": mount_path,
            "init_containers": (wait_for_shared_dir(settings.ray.image, mount_path),),
        },
        dependencies=(volume,),
        outputs=outputs,
    )
