"""The `ray-platform:gcp` block: the GKE cluster and the choices only GCP has.

pydantic only: `pulumi_gcp` is never imported here (the table loads this module to validate a
stack's block before anything else).
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from infra.settings.errors import message
from infra.settings.models import CloudSettings, Model, Settings
from infra.settings.values import CpuQuantity, Days, MemoryQuantity, MountPath, VolumeSize

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GKE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)*[0-9]+$")
_ZONE = re.compile(r"^[a-z]+(-[a-z]+)*[0-9]+-[a-z]$")
_GSA_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# A service account's e-mail: a user-managed one (NAME@PROJECT.iam.gserviceaccount.com) or the
# Compute Engine default (NUMBER-compute@developer.gserviceaccount.com) GKE nodes run as.
_SA_EMAIL = re.compile(r"^[a-z0-9][a-z0-9.-]{0,99}@[a-z0-9][a-z0-9.-]{0,99}\.gserviceaccount\.com$")

FilestoreTier = Literal["BASIC_HDD", "BASIC_SSD", "ZONAL", "REGIONAL"]
TIER_MINIMUM_GIB: dict[str, int] = {
    # Filestore service tiers: Basic HDD 1 TiB, Basic SSD 2.5 TiB, zonal and regional
    # (lower range) 1 TiB. The CSI driver's 100 GiB Basic HDD still bills 1 TiB of quota.
    "BASIC_HDD": 1024,
    "BASIC_SSD": 2560,
    "ZONAL": 1024,
    "REGIONAL": 1024,
}
BucketRole = Literal["roles/storage.objectUser", "roles/storage.objectViewer"]
# A cache size as the GCS FUSE CSI driver takes it: a quantity, or -1 for unlimited.
CacheSize = Annotated[str, Field(pattern=r"^(-1|0|[0-9]+(Ki|Mi|Gi|Ti)?)$")]


def region_of(location: str) -> str:
    """`us-central1-a` → `us-central1`; a region is its own region."""
    return location.rsplit("-", 1)[0] if _ZONE.match(location) else location


def is_zone(location: str) -> bool:
    return bool(_ZONE.match(location))


class BucketSettings(Model):
    """The GCS artifact bucket."""

    location: str | None = None
    """Default: the cluster's region (data next to the pods; no inter-region egress)."""
    soft_delete_days: int = Field(7, alias="softDeleteDays", ge=7, le=90)
    """Deleted objects stay restorable this long (GCS allows 7 to 90; 0, off, is not offered)."""
    abort_multipart_days: Days = Field(7, alias="abortIncompleteMultipartUploadDays")
    """Incomplete multipart uploads are deleted this long after they started."""


class WorkloadIdentitySettings(Model):
    """How the Ray ServiceAccounts reach the bucket."""

    bucket_role: BucketRole = Field("roles/storage.objectUser", alias="bucketRole")
    """Granted on the bucket only, never on the project."""
    google_service_account: bool = Field(False, alias="googleServiceAccount")
    """true: the older path — a Google service account the KSAs impersonate (needed where a
    service rejects federated principals, e.g. signing URLs). false: the KSAs' own principals."""
    service_account_id: str | None = Field(None, alias="serviceAccountId")
    """The Google service account's id (default: ray-<stack>)."""

    @field_validator("service_account_id")
    @classmethod
    def _gsa(cls, v: str | None) -> str | None:
        if v is not None and not _GSA_ID.match(v):
            raise ValueError("is not a service account id (6-30 of a-z, 0-9, '-')")
        return v


class SidecarSettings(Model):
    """Resources of the GCS FUSE sidecar GKE injects (its `gke-gcsfuse/*` annotations); unset:
    GKE's defaults. "0" means no limit."""

    cpu_limit: CpuQuantity | None = Field(None, alias="cpuLimit")
    """gke-gcsfuse/cpu-limit."""
    cpu_request: CpuQuantity | None = Field(None, alias="cpuRequest")
    """gke-gcsfuse/cpu-request."""
    memory_limit: MemoryQuantity | None = Field(None, alias="memoryLimit")
    """gke-gcsfuse/memory-limit."""
    memory_request: MemoryQuantity | None = Field(None, alias="memoryRequest")
    """gke-gcsfuse/memory-request."""
    ephemeral_storage_limit: VolumeSize | None = Field(None, alias="ephemeralStorageLimit")
    """Also bounds the file cache, which lives on the sidecar's ephemeral storage."""
    ephemeral_storage_request: VolumeSize | None = Field(None, alias="ephemeralStorageRequest")
    """gke-gcsfuse/ephemeral-storage-request."""


class GcsFuseSettings(Model):
    """The bucket (the stack's prefix only) mounted on every Ray pod by the GCS FUSE CSI driver."""

    enabled: bool = False
    """true: mount the bucket's prefix (needs the cluster's GcsFuseCsiDriver add-on)."""
    mount_path: MountPath = Field("/mnt/bucket", alias="mountPath")
    """Where every Ray container sees the prefix."""
    file_cache_capacity: CacheSize | None = Field(None, alias="fileCacheCapacity")
    """For read-heavy data (e.g. training sets read every epoch); unset: no file cache."""
    metadata_cache_ttl_seconds: int | None = Field(
        None, alias="metadataCacheTtlSeconds", ge=-1, le=31_536_000
    )
    """-1: never expire (data that does not change under the mount)."""
    metadata_stat_cache_capacity: CacheSize | None = Field(None, alias="metadataStatCacheCapacity")
    """The stat cache's size (-1: unlimited); unset: the driver's default."""
    metadata_type_cache_capacity: CacheSize | None = Field(None, alias="metadataTypeCacheCapacity")
    """The type cache's size (-1: unlimited); unset: the driver's default."""
    sidecar: SidecarSettings = Field(default_factory=lambda: SidecarSettings.model_validate({}))


class FilestoreBackupSettings(Model):
    """Scheduled backups of the Filestore instance (prod: `StatefulPolicy.backups`), by the
    Backup and DR service: a daily backup plan into a backup vault in the instance's region."""

    retention_days: int = Field(35, alias="retentionDays", ge=1, le=36_500)
    """Each backup is kept this long, and the vault enforces it (no one deletes a backup
    sooner). The vault's enforced retention can only grow: lowering this needs a new vault.
    Default: AWS Backup's daily EFS plan keeps 35 days too."""
    window_start_hour_utc: int = Field(2, alias="windowStartHourUtc", ge=0, le=23)
    """The daily backup starts in a 6-hour window from this hour (UTC)."""


class FilestoreSettings(Model):
    """The Filestore instance behind the shared file system."""

    tier: FilestoreTier = "BASIC_HDD"
    """The service tier; each has its own minimum capacity (BASIC_HDD 1 TiB, BASIC_SSD 2.5 TiB)."""
    capacity_gib: int | None = Field(None, alias="capacityGiB", ge=1, le=102_400)
    # Basic tiers end at 63.9 TiB; zonal and regional at 100 TiB (checked in rules()).
    """Default: the tier's minimum. Filestore bills provisioned capacity, used or not."""
    zone: str | None = None
    """The zonal tiers' zone (BASIC_HDD, BASIC_SSD, ZONAL): required on a regional cluster, used
    as is; a zonal cluster's own zone by default. Never derived from the cluster's node zones: a
    Filestore instance cannot move, so a changed zone replaces it (and everything on it)."""

    backup: FilestoreBackupSettings = Field(
        default_factory=lambda: FilestoreBackupSettings.model_validate({})
    )

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None and not _ZONE.match(v):
            raise ValueError("is not a zone such as us-central1-a")
        return v

    @property
    def capacity(self) -> int:
        return self.capacity_gib or TIER_MINIMUM_GIB[self.tier]


class ImageRepositorySettings(Model):
    """The Artifact Registry Docker repository the app image is pushed to (prod only), in the
    cluster's region: immutable tags, encrypted with its own rotating Cloud KMS key, cleanup
    policies, protected and retained."""

    untagged_expiry_days: Days = Field(14, alias="untaggedExpiryDays")
    """Untagged versions older than this are deleted by a cleanup policy. Tagged versions are
    kept: tags are immutable and the pipeline always pushes with one, so an image a RayCluster
    runs by digest stays tagged."""
    keep_recent: int = Field(10, alias="keepRecent", ge=1, le=1000)
    """The most recent versions kept whatever the other cleanup policies say (Artifact Registry
    applies a keep policy before any delete)."""
    node_service_accounts: tuple[str, ...] = Field((), alias="nodeServiceAccounts")
    """E-mails of the service accounts the GKE nodes run as: each is granted
    roles/artifactregistry.reader on this repository only, so the kubelet can pull the app image.
    Empty: the nodes' service account must already have it (a project-level reader role, or a
    grant of your own); GKE's default node service account may not."""

    @field_validator("node_service_accounts")
    @classmethod
    def _accounts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for email in v:
            if not _SA_EMAIL.fullmatch(email):
                raise ValueError(
                    f"has {email!r}, which is not a service account e-mail "
                    "(NAME@PROJECT.iam.gserviceaccount.com)"
                )
        if len(set(v)) != len(v):
            raise ValueError("lists a service account twice")
        return v


class GcpSettings(CloudSettings):
    """`ray-platform:gcp`; the project is the GCP provider's own `gcp:project`."""

    PROVIDER_KEYS: ClassVar[dict[str, str]] = {"project": "gcp:project"}
    MANAGED_OPERATOR: ClassVar[str] = "GKE's Ray operator add-on"

    project: str
    """The project of the cluster and of everything the program creates (the explicit GCP
    provider's)."""
    cluster_name: str = Field(alias="clusterName")
    """The GKE cluster; its network, location, add-ons and workload pool are looked up."""
    location: str
    """The cluster's location (region or zone), as `gcloud container clusters list` shows it."""
    bucket: BucketSettings = Field(default_factory=lambda: BucketSettings.model_validate({}))
    workload_identity: WorkloadIdentitySettings = Field(
        default_factory=lambda: WorkloadIdentitySettings.model_validate({}),
        alias="workloadIdentity",
    )
    gcs_fuse: GcsFuseSettings = Field(
        default_factory=lambda: GcsFuseSettings.model_validate({}), alias="gcsFuse"
    )
    filestore: FilestoreSettings = Field(
        default_factory=lambda: FilestoreSettings.model_validate({})
    )
    image_repository: ImageRepositorySettings = Field(
        default_factory=lambda: ImageRepositorySettings.model_validate({}),
        alias="imageRepository",
    )
    """The app image's Artifact Registry repository, which prod stacks create (dev ones none)."""

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        if not _PROJECT.match(v):
            raise ValueError("is not a GCP project id (6-30 of a-z, 0-9, '-')")
        return v

    @field_validator("cluster_name")
    @classmethod
    def _cluster(cls, v: str) -> str:
        if not _GKE_NAME.match(v):
            raise ValueError("is not a GKE cluster name (a-z, 0-9, '-'; at most 40)")
        return v

    @field_validator("location")
    @classmethod
    def _location(cls, v: str) -> str:
        if not (_REGION.match(v) or _ZONE.match(v)):
            raise ValueError("is not a GCP region or zone such as us-central1 or us-central1-a")
        return v

    def rules(self, settings: Settings) -> list[str]:
        problems = []
        fs = self.filestore
        minimum = TIER_MINIMUM_GIB[fs.tier]
        maximum = 65_433 if fs.tier.startswith("BASIC") else 102_400
        if fs.capacity_gib is not None and fs.capacity_gib > maximum:
            problems.append(
                message(
                    "gcp.filestore.capacityGiB",
                    fs.capacity_gib,
                    f"is above the {fs.tier} maximum of {maximum} GiB",
                )
            )
        if fs.capacity_gib is not None and fs.capacity_gib < minimum:
            problems.append(
                message(
                    "gcp.filestore.capacityGiB",
                    fs.capacity_gib,
                    f"is below the {fs.tier} minimum of {minimum} GiB",
                )
            )
        if fs.zone is not None and fs.tier == "REGIONAL":
            problems.append(
                message(
                    "gcp.filestore.zone",
                    fs.zone,
                    "is not used by the REGIONAL tier (its instance spans the region); drop it",
                )
            )
        elif fs.zone is not None and region_of(fs.zone) != region_of(self.location):
            problems.append(
                message(
                    "gcp.filestore.zone",
                    fs.zone,
                    f"is not in the cluster's region {region_of(self.location)}",
                )
            )
        shared = settings.storage.shared_filesystem
        if shared.enabled and "size" in shared.model_fields_set:
            problems.append(
                message(
                    "storage.sharedFilesystem.size",
                    shared.size,
                    "is not used on cloud gcp: the Filestore capacity is "
                    "ray-platform:gcp.filestore.capacityGiB",
                )
            )
        fuse = self.gcs_fuse
        if fuse.enabled and not settings.storage.artifact_bucket.enabled:
            problems.append(
                message(
                    "gcp.gcsFuse.enabled",
                    True,
                    "mounts the artifact bucket; set storage.artifactBucket.enabled: true",
                )
            )
        if fuse.enabled and shared.enabled and fuse.mount_path == shared.mount_path:
            problems.append(
                message(
                    "gcp.gcsFuse.mountPath",
                    fuse.mount_path,
                    "is also storage.sharedFilesystem.mountPath; give the bucket its own path",
                )
            )
        if "image_repository" in self.model_fields_set and not settings.stateful.image_repository:
            problems.append(
                message(
                    "gcp.imageRepository",
                    self.image_repository.model_dump(by_alias=True, exclude_unset=True),
                    f"is not used in mode {settings.mode}: only prod stacks create an image "
                    "repository (dev runs the generic Ray image)",
                )
            )
        return problems
