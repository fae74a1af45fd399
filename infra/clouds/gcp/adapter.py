"""GCP adapter: GKE lookups, then GCS + Filestore + Workload Identity and their StorageWiring."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.gcp.filestore_share import FilestoreBackupArgs, FilestoreShare, FilestoreShareArgs
from components.gcp.gcs_bucket import GcsBucket, GcsBucketArgs
from components.gcp.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from components.kuberay.image import RAY_GID, RAY_UID
from components.kuberay.network_policy import egress_to
from components.kubernetes.shared_dir_owner import (
    SharedDirOwner,
    SharedDirOwnerArgs,
    wait_for_shared_dir,
)
from components.kubernetes.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import SHARED_VOLUME, WORKING_DIRS, StorageWiring
from infra import kuberay_release
from infra.clouds.adapter import (
    HEAD_SERVICE_ACCOUNT,
    SHARED_CLAIM,
    WORKER_SERVICE_ACCOUNT,
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
)
from infra.clouds.gcp import lookup
from infra.clouds.gcp.lookup import (
    FUSE_NATIVE_SIDECAR_TEXT,
    GkeCluster,
    filestore_network,
    kubeconfig,
    lookup_cluster,
)
from infra.clouds.gcp.settings import GcpSettings, GcsFuseSettings, is_zone, region_of
from infra.settings import Settings, setting_error

FUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
FILESTORE_DRIVER = "filestore.csi.storage.gke.io"
FUSE_VOLUME = "gcs-fuse"
METADATA_SERVER_SELECTOR = {"iam.gke.io/gke-metadata-server-enabled": "true"}
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")
_ID_INVALID = re.compile(r"[^a-z0-9-]+")


def backup_ids(stack: str) -> str:
    """The Backup and DR ids of a stack's Filestore backups: `ray-<stack>-shared-fs`, within
    the ids' rules (lowercase letters, digits, '-'; a letter first, at most 63)."""
    middle = _ID_INVALID.sub("-", stack.lower()).strip("-")
    return f"ray-{middle}"[:53].rstrip("-") + "-shared-fs"


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


class GcpAdapter(CloudAdapter):
    """GKE + Filestore + GCS + Workload Identity."""

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
        cluster = self.cluster
        if cluster.workload_pool is None:
            raise setting_error(
                "gcp.clusterName",
                cluster.name,
                "has Workload Identity off, which Ray's bucket access needs; turn it on: "
                + cluster.gcloud_update(f"--workload-pool={cluster.project}.svc.id.goog"),
            )
        install = settings.operator.install
        if cluster.ray_operator_addon and install != "managed":
            raise setting_error(
                "operator.install",
                install,
                f"would install a second KubeRay: cluster {cluster.name} runs the GKE Ray "
                "operator add-on, which owns KubeRay and its CRDs; set operator.install: managed "
                "(a stack deployed before: first `pulumi state delete` its kuberay-crds resources "
                "so the switch does not delete the CRDs)",
            )
        if install == "managed" and not cluster.ray_operator_addon:
            raise setting_error(
                "operator.install",
                install,
                f"needs the GKE Ray operator add-on, which cluster {cluster.name} does not run; "
                "use helm, or enable it: "
                + cluster.gcloud_update("--update-addons RayOperator=ENABLED"),
            )
        if install == "managed":
            self._check_managed_kuberay()
        if block.gcs_fuse.enabled:
            if not cluster.gcs_fuse_driver:
                raise setting_error(
                    "gcp.gcsFuse.enabled",
                    True,
                    f"needs the GCS FUSE CSI driver, which cluster {cluster.name} does not run; "
                    "enable it: "
                    + cluster.gcloud_update("--update-addons GcsFuseCsiDriver=ENABLED"),
                )
            if not cluster.supports_native_sidecar:
                raise setting_error(
                    "gcp.gcsFuse.enabled",
                    True,
                    f"needs GKE {FUSE_NATIVE_SIDECAR_TEXT} or later (the FUSE native sidecar, "
                    "so KubeRay's wait-gcs-ready init container can mount the bucket); cluster "
                    f"{cluster.name} runs {cluster.oldest_version} (control plane or a node pool)",
                )
        self.filestore_location = ""
        if settings.storage.shared_filesystem.enabled:
            self.filestore_location = self._filestore_location()

    def _check_managed_kuberay(self) -> None:
        """The add-on's KubeRay must serve what the RayCluster sets: the API server prunes
        fields its CRD lacks, silently (an add-on older than KubeRay 1.6 drops
        `upgradeStrategy`, and so the pods are never recreated on a change; one without
        `authOptions` runs the dashboard without auth, or the head waits for a Secret that
        never comes). Read from the live CRD, so the add-on's own version needs no table."""
        cluster = self.cluster
        try:
            crd = lookup.raycluster_crd(cluster)
        except Exception as err:
            raise setting_error(
                "operator.install",
                "managed",
                f"needs the RayCluster CRD of cluster {cluster.name}'s Ray add-on, which could "
                f"not be read: {lookup.api_reason(err)}",
            ) from None
        needs: dict[str, str | None] = {"spec.upgradeStrategy.type": "Recreate"}
        if self.settings.ray.auth == "token":
            needs["spec.authOptions.mode"] = "token"
        schema = kuberay_release.served_schema(crd)
        missing = (
            ["apiVersion ray.io/v1"]
            if schema is None
            else kuberay_release.missing_fields(schema, needs)
        )
        if missing:
            raise setting_error(
                "operator.install",
                "managed",
                f"needs KubeRay 1.6 or later from the GKE Ray add-on; cluster {cluster.name}'s "
                f"RayCluster CRD lacks {', '.join(missing)} (the API server would drop them "
                "silently): upgrade the cluster (the add-on follows its GKE version), or "
                "disable the add-on and use operator.install: helm",
            )

    def _filestore_location(self) -> str:
        """The regional tier takes the region; the zonal tiers a zone: the setting, or a zonal
        cluster's own zone. Never picked from the node zones: adding one would move (replace)
        the instance."""
        fs, cluster = self.gcp.filestore, self.cluster
        if fs.tier == "REGIONAL":
            return region_of(cluster.location)
        if fs.zone is not None:
            return fs.zone
        if is_zone(cluster.location):
            return cluster.location
        zones = ", ".join(sorted(cluster.node_locations)) or "none reported"
        raise setting_error(
            "gcp.filestore.zone",
            None,
            f"is required for the {fs.tier} tier on regional cluster {cluster.name}: name the "
            f"instance's zone (the cluster's node zones: {zones}); it is used as is, and "
            "changing it replaces the instance",
        )

    def egress_allowances(self) -> tuple[Mapping[str, object], ...]:
        # Workload Identity's tokens come from the GKE metadata server, reached at
        # 169.254.169.254:80 or 169.254.169.252:988 depending on the cluster's dataplane: both.
        return (egress_to("169.254.169.254/32", 80), egress_to("169.254.169.252/32", 988))

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
        """Filestore (+ ownership Job, PV/PVC), the bucket, the Workload Identity KSAs."""
        settings, cluster, block = self.settings, self.cluster, self.gcp
        storage, stateful, labels = settings.storage, settings.stateful, self.tags()
        outputs: dict[str, pulumi.Input[str]] = {"gcpProject": block.project}
        dependencies: list[pulumi.Resource] = []

        claim_name: str | None = None
        if storage.shared_filesystem.enabled:
            network, connect_mode = filestore_network(cluster)
            share = FilestoreShare(
                "shared-fs",
                FilestoreShareArgs(
                    project=block.project,
                    location=self.filestore_location,
                    tier=block.filestore.tier,
                    capacity_gib=block.filestore.capacity,
                    network=network,
                    connect_mode=connect_mode,
                    protect=stateful.protect,
                    labels=labels,
                    backup=(
                        FilestoreBackupArgs(
                            region=region_of(self.filestore_location),
                            ids=backup_ids(settings.stack),
                            retention_days=block.filestore.backup.retention_days,
                            window_start_hour_utc=block.filestore.backup.window_start_hour_utc,
                        )
                        if stateful.backups
                        else None
                    ),
                ),
                opts=self.with_provider(self.provider),
            )
            if share.backup_vault_id is not None:
                outputs["fileSystemBackupVault"] = share.backup_vault_id
            path = f"/{share.share_name}"
            # The new share's root is root's (755): a one-shot root Job outside Ray's namespace
            # hands it to the Ray user; Ray pods wait until it is writable.
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
                location, share_name = self.filestore_location, share.share_name
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
                source = {"nfs": {"server": share.ip_address, "path": path}}
            volume = SharedVolume(
                SHARED_VOLUME,
                SharedVolumeArgs(
                    namespace=target.namespace,
                    claim_name=SHARED_CLAIM,
                    source=source,
                    capacity=f"{block.filestore.capacity}Gi",
                ),
                opts=target.component_opts(),
            )
            claim_name = volume.claim_name
            dependencies.append(volume)
            outputs["fileSystemId"] = share.instance_id
            outputs["sharedMountPath"] = storage.shared_filesystem.mount_path

        bucket_name: pulumi.Output[str] | None = None
        bucket_uri: pulumi.Output[str] | None = None
        prefix = settings.bucket_prefix
        if storage.artifact_bucket.enabled:
            b = block.bucket
            bucket = GcsBucket(
                "artifacts",
                GcsBucketArgs(
                    project=block.project,
                    location=b.location or region_of(cluster.location),
                    noncurrent_version_days=storage.artifact_bucket.noncurrent_version_days,
                    expiring_prefixes={
                        f"{settings.bucket_prefix}/{WORKING_DIRS}/": (
                            storage.artifact_bucket.working_dir_expiry_days
                        )
                    },
                    soft_delete_days=b.soft_delete_days,
                    abort_multipart_days=b.abort_multipart_days,
                    service_agent=cluster.storage_service_agent,
                    force_destroy=stateful.force_destroy,
                    protect=stateful.protect,
                    labels=labels,
                ),
                opts=self.with_provider(self.provider),
            )
            bucket_name = bucket.bucket_name
            bucket_uri = bucket_name.apply(lambda name: f"gs://{name}/{prefix}")
            outputs["bucketUri"] = bucket_uri

        wi = block.workload_identity
        assert cluster.workload_pool is not None
        identity = WorkloadIdentity(
            "ray-wi",
            WorkloadIdentityArgs(
                project=block.project,
                project_number=cluster.project_number,
                workload_pool=cluster.workload_pool,
                namespace=target.namespace,
                service_accounts=(HEAD_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT),
                bucket_name=bucket_name,
                bucket_role=wi.bucket_role,
                token_service_account=HEAD_SERVICE_ACCOUNT,
                google_service_account_id=(
                    (wi.service_account_id or f"ray-{settings.stack}"[:30].rstrip("-"))
                    if wi.google_service_account
                    else None
                ),
            ),
            opts=self.with_provider(self.provider, target.component_opts()),
        )
        dependencies.append(identity)
        outputs["workloadIdentityMembers"] = pulumi.Output.json_dumps(identity.members)
        if identity.google_service_account_email is not None:
            outputs["googleServiceAccount"] = identity.google_service_account_email

        fuse = block.gcs_fuse
        volumes: tuple[Mapping[str, Any], ...] = ()
        mounts: tuple[Mapping[str, Any], ...] = ()
        annotations: dict[str, str] = {}
        if fuse.enabled and bucket_name is not None:
            volumes = (fuse_volume(bucket_name, prefix, fuse),)
            mounts = ({"name": FUSE_VOLUME, "mountPath": fuse.mount_path},)
            annotations = fuse_annotations(fuse)
            outputs["bucketMountPath"] = fuse.mount_path

        wiring = StorageWiring(
            service_account_name=HEAD_SERVICE_ACCOUNT,
            worker_service_account_name=WORKER_SERVICE_ACCOUNT,
            shared_claim_name=claim_name,
            shared_mount_path=storage.shared_filesystem.mount_path if claim_name else None,
            bucket_uri=bucket_uri,
            env=(("GOOGLE_CLOUD_PROJECT", block.project),),
            init_containers=(
                (wait_for_shared_dir(settings.ray.image, storage.shared_filesystem.mount_path),)
                if claim_name
                else ()
            ),
            volumes=volumes,
            volume_mounts=mounts,
            pod_annotations=annotations,
            # Standard node pools may run without the GKE metadata server (then Workload
            # Identity silently fails); Autopilot runs it on every node.
            node_selector={} if cluster.autopilot else dict(METADATA_SERVER_SELECTOR),
        )
        return CloudStorage(wiring, dependencies, outputs)
