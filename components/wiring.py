"""StorageWiring: what a cloud adapter hands the RayCluster builder. Plain data, cloud-neutral."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# Where `ray-platform submit` puts working-directory zips under the stack's bucket prefix, which
# each adapter's bucket expires: part of the contract with the command, so defined there once.
from contract.outputs import WORKING_DIRS as WORKING_DIRS

if TYPE_CHECKING:
    # Only for the annotation: the builders never read a bucket URI, so this module (and the pure
    # builders that import it) load no Pulumi at run time.
    import pulumi

SHARED_VOLUME = "shared"
"""The shared file system's name wherever it is named: the pod volume Ray pods and the ownership
Job mount, and the SharedVolume component each adapter registers (its Pulumi name: changing it
would replace the volume)."""


@dataclass(frozen=True)
class StorageWiring:
    """How Ray pods reach storage and identity, whatever the cloud.

    Every field is plain data so the RayCluster spec stays a pure function of settings + wiring.
    """

    service_account_name: str
    """The head's ServiceAccount (KubeRay binds its autoscaler Role to it)."""
    worker_service_account_name: str | None = None
    """The workers' own ServiceAccount, with the same cloud identity but none of the head's
    Kubernetes rights (user code runs there); default: the head's."""
    shared_claim_name: str | None = None
    """PersistentVolumeClaim of the shared file system, if enabled."""
    shared_mount_path: str | None = None
    bucket_uri: pulumi.Input[str] | None = None
    """`s3://bucket/prefix` (or `gs://…`) the stack may use, if enabled. May be an Output (the
    bucket's name is known after creation); the builders only place it, never read it."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment for every Ray container (name, value), e.g. the region."""
    secret_env: tuple[tuple[str, str, str], ...] = ()
    """Environment from Secrets for every Ray container: (name, Secret, key), e.g. the
    credentials of an S3-compatible server."""
    volumes: tuple[Mapping[str, Any], ...] = ()
    """Extra pod volumes on every Ray pod (e.g. a GCS FUSE CSI ephemeral volume)..."""
    volume_mounts: tuple[Mapping[str, Any], ...] = ()
    """...and where every Ray container mounts them."""
    init_containers: tuple[Mapping[str, Any], ...] = ()
    """Storage preparation run before Ray on every pod (e.g. ownership of a hostPath)."""
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.shared_claim_name is None) != (self.shared_mount_path is None):
            raise ValueError("shared_claim_name and shared_mount_path go together")
