"""FilestoreShare: the shared POSIX file system on GCP, a Filestore instance on the GKE network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

SHARE_NAME = "ray"
FILESTORE_RESOURCE_TYPE = "file.googleapis.com/Instance"
"""The Backup and DR resource type of a Filestore instance."""
SECONDS_PER_DAY = 86_400
BACKUP_WINDOW_HOURS = 6


def _first_address(networks: Sequence[gcp.filestore.outputs.InstanceNetwork]) -> str:
    """The instance's NFS address: the one network's first (IPv4) address."""
    addresses = networks[0].ip_addresses if networks else None
    if not addresses:
        raise ValueError("the Filestore instance reports no IP address")
    return str(addresses[0])


@dataclass(frozen=True)
class FilestoreBackupArgs:
    """Scheduled backups by the Backup and DR service (Filestore's "enhanced backups"): a
    backup vault and a daily backup plan in the instance's region, associated with it."""

    region: str
    """The instance's region (Backup and DR locations are regions)."""
    ids: str
    """The vault's, plan's and association's ids (unique per project and region): lowercase
    letters, digits and '-', a letter first, at most 63."""
    retention_days: int
    """Kept this long, enforced by the vault: no one can delete a backup sooner."""
    window_start_hour_utc: int = 2


@dataclass(frozen=True)
class FilestoreShareArgs:
    """Inputs of a FilestoreShare."""

    project: str
    location: str
    """A zone for the zonal tiers (BASIC_HDD, BASIC_SSD, ZONAL), a region for REGIONAL."""
    tier: str
    capacity_gib: int
    """At least the tier's minimum (checked in the settings)."""
    network: str
    """The GKE cluster's VPC: its bare name, or `projects/HOST/global/networks/N` (Shared VPC)."""
    connect_mode: str = "DIRECT_PEERING"
    protect: bool = False
    """Protect the instance, keep it on delete, and turn on Filestore's deletion protection."""
    labels: Mapping[str, str] = field(default_factory=dict)
    backup: FilestoreBackupArgs | None = None
    """Scheduled backups; retained and protected like the instance."""


class FilestoreShare(pulumi.ComponentResource):
    """One Filestore instance with one NFSv3 share, `/ray`."""

    instance_id: pulumi.Output[str]
    """`projects/P/locations/L/instances/NAME`."""
    instance_name: pulumi.Output[str]
    ip_address: pulumi.Output[str]
    """The NFS server address on the cluster's network."""
    share_name: str
    """The share (exported as `/<share_name>`)."""

    def __init__(
        self, name: str, args: FilestoreShareArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:gcp:FilestoreShare", name, None, opts)
        instance = gcp.filestore.Instance(
            f"{name}-instance",
            project=args.project,
            location=args.location,
            tier=args.tier,
            file_shares={"name": SHARE_NAME, "capacity_gb": args.capacity_gib},
            networks=[
                {
                    "network": args.network,
                    "modes": ["MODE_IPV4"],
                    "connect_mode": args.connect_mode,
                }
            ],
            deletion_protection_enabled=args.protect,
            deletion_protection_reason=(
                "Ray's shared file system (prod): data outlives the stack" if args.protect else None
            ),
            labels=dict(args.labels),
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        self.instance_id = instance.id
        self.instance_name = instance.name
        self.ip_address = instance.networks.apply(_first_address)
        self.share_name = SHARE_NAME
        self.backup_vault_id: pulumi.Output[str] | None = None
        """The backup vault (`projects/P/locations/R/backupVaults/ID`), when backups are on."""
        if args.backup is not None:
            self.backup_vault_id = self._backups(name, args, args.backup, instance)
        self.register_outputs(
            {
                "instance_id": self.instance_id,
                "instance_name": self.instance_name,
                "share_name": self.share_name,
                "ip_address": self.ip_address,
                "backup_vault_id": self.backup_vault_id,
            }
        )

    def _backups(
        self,
        name: str,
        args: FilestoreShareArgs,
        backup: FilestoreBackupArgs,
        instance: gcp.filestore.Instance,
    ) -> pulumi.Output[str]:
        """Vault, daily plan and the association that applies it to the instance; each kept
        like the instance (the association going away would stop the backups)."""
        stateful = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        vault = gcp.backupdisasterrecovery.BackupVault(
            f"{name}-backup-vault",
            project=args.project,
            location=backup.region,
            backup_vault_id=backup.ids,
            description="Backups of Ray's shared Filestore instance",
            backup_minimum_enforced_retention_duration=(
                f"{backup.retention_days * SECONDS_PER_DAY}s"
            ),
            # Lets a longer retention setting extend the vault's (shortening stays refused).
            force_update=True,
            labels=dict(args.labels),
            opts=stateful,
        )
        start = backup.window_start_hour_utc
        plan = gcp.backupdisasterrecovery.BackupPlan(
            f"{name}-backup-plan",
            project=args.project,
            location=backup.region,
            backup_plan_id=backup.ids,
            description="Daily backup of Ray's shared Filestore instance",
            resource_type=FILESTORE_RESOURCE_TYPE,
            backup_vault=vault.id,
            backup_rules=[
                {
                    "rule_id": "daily",
                    "backup_retention_days": backup.retention_days,
                    "standard_schedule": {
                        "recurrence_type": "DAILY",
                        "time_zone": "UTC",
                        "backup_window": {
                            "start_hour_of_day": start,
                            "end_hour_of_day": min(start + BACKUP_WINDOW_HOURS, 24),
                        },
                    },
                }
            ],
            opts=stateful,
        )
        gcp.backupdisasterrecovery.BackupPlanAssociation(
            f"{name}-backup",
            project=args.project,
            location=backup.region,
            backup_plan_association_id=backup.ids,
            resource=instance.id,
            resource_type=FILESTORE_RESOURCE_TYPE,
            backup_plan=plan.id,
            opts=stateful,
        )
        vault_id: pulumi.Output[str] = vault.id
        return vault_id
