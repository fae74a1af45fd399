"""FilestoreShare: the shared POSIX file system on GCP, a Filestore instance on the GKE network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

SHARE_NAME = "ray"


def _first_address(networks: Sequence[gcp.filestore.outputs.InstanceNetwork]) -> str:
    """The instance's NFS address: the one network's first (IPv4) address."""
    addresses = networks[0].ip_addresses if networks else None
    if not addresses:
        raise ValueError("the Filestore instance reports no IP address")
    return str(addresses[0])


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
        self.register_outputs({"instance_id": self.instance_id, "ip_address": self.ip_address})
