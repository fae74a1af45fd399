"""EfsFileSystem: the shared POSIX file system on AWS, reachable only from the EKS cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.aws.policy import deny_insecure_transport, policy_json


@dataclass(frozen=True)
class EfsFileSystemArgs:
    """Inputs of an EfsFileSystem."""

    vpc_id: pulumi.Input[str]
    """The EKS cluster's VPC."""
    subnets_by_zone: Mapping[str, str]
    """Availability zone → one private subnet there (EFS allows one mount target per zone)."""
    nfs_from_cidrs: Sequence[str] = ()
    """NFS (TCP 2049) is admitted from these CIDR blocks (the VPC's, by default)..."""
    nfs_from_security_groups: Sequence[pulumi.Input[str]] = ()
    """...and from these security groups (when narrowed to named groups)."""
    kms_key_arn: pulumi.Input[str] | None = None
    """A customer-managed key; default: the AWS-managed `aws/elasticfilesystem` key."""
    backup: bool = False
    """AWS Backup's daily plan for this file system (on in prod)."""
    protect: bool = False
    """Protect the file system, and the policies that guard and back it up, and keep them on
    delete (prod): deleting the backup policy turns backups off."""
    posix_uid: int = 1000
    posix_gid: int = 100
    root_directory: str = "/ray"
    """Where the access point roots Ray's view; created owned by uid/gid with mode 0750."""
    tags: Mapping[str, str] = field(default_factory=dict)


class EfsFileSystem(pulumi.ComponentResource):
    """Encrypted, elastic, regional EFS with TLS-only access through a uid/gid-1000 access point."""

    file_system_id: pulumi.Output[str]
    """The EFS id (fs-…)."""
    access_point_id: pulumi.Output[str]
    """The access point (fsap-…) Ray mounts through."""
    volume_handle: pulumi.Output[str]
    """The EFS CSI driver volume handle, `fs-…::fsap-…`."""
    mount_targets: list[aws.efs.MountTarget]
    """Mount targets; a PersistentVolume should depend on them."""

    def __init__(
        self, name: str, args: EfsFileSystemArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:aws:EfsFileSystem", name, None, opts)
        if not args.subnets_by_zone:
            raise ValueError(f"{name}: EFS needs at least one subnet")
        if not args.nfs_from_cidrs and not args.nfs_from_security_groups:
            raise ValueError(f"{name}: nothing could reach NFS")
        child = pulumi.ResourceOptions(parent=self)
        tags = {**args.tags, "Name": name}

        stateful = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        fs = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,
            kms_key_id=args.kms_key_arn,
            throughput_mode="elastic",
            performance_mode="generalPurpose",
            tags=tags,
            opts=stateful,
        )
        aws.efs.BackupPolicy(
            f"{name}-backup",
            file_system_id=fs.id,
            backup_policy={"status": "ENABLED" if args.backup else "DISABLED"},
            opts=stateful,
        )
        sg = aws.ec2.SecurityGroup(
            f"{name}-nfs",
            vpc_id=args.vpc_id,
            description=f"NFS to EFS {name} from the EKS cluster's VPC or named groups only",
            tags=tags,
            opts=child,
        )
        # A rule per source; names derive from the source, so adding one never renames another.
        for cidr in dict.fromkeys(args.nfs_from_cidrs):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-nfs-from-{cidr.replace('/', '-')}",
                security_group_id=sg.id,
                ip_protocol="tcp",
                from_port=2049,
                to_port=2049,
                cidr_ipv4=cidr,
                description=f"NFS from {cidr}",
                opts=child,
            )
        for i, group in enumerate(args.nfs_from_security_groups):
            label = group if isinstance(group, str) else f"group-{i}"
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-nfs-from-{label}",
                security_group_id=sg.id,
                ip_protocol="tcp",
                from_port=2049,
                to_port=2049,
                referenced_security_group_id=group,
                description=f"NFS from {label}",
                opts=child,
            )
        # Named by zone, replaced delete-first: a zone holds one mount target at most.
        self.mount_targets = [
            aws.efs.MountTarget(
                f"{name}-mt-{zone}",
                file_system_id=fs.id,
                subnet_id=subnet_id,
                security_groups=[sg.id],
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            for zone, subnet_id in args.subnets_by_zone.items()
        ]
        ap = aws.efs.AccessPoint(
            f"{name}-ap",
            file_system_id=fs.id,
            posix_user={"uid": args.posix_uid, "gid": args.posix_gid},
            root_directory={
                "path": args.root_directory,
                "creation_info": {
                    "owner_uid": args.posix_uid,
                    "owner_gid": args.posix_gid,
                    "permissions": "0750",
                },
            },
            tags=tags,
            opts=child,
        )
        aws.efs.FileSystemPolicy(
            f"{name}-policy",
            file_system_id=fs.id,
            policy=policy_json(
                {
                    "Sid": "MountThroughMountTargets",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                    "Resource": fs.arn,
                    "Condition": {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
                },
                deny_insecure_transport(fs.arn, principal={"AWS": "*"}, action="*"),
                {
                    # NFS is open to the VPC: without this, any pod there could mount the
                    # file system's root with a plain nfs volume and bypass the access point.
                    "Sid": "OnlyThroughTheAccessPoint",
                    "Effect": "Deny",
                    "Principal": {"AWS": "*"},
                    "Action": [
                        "elasticfilesystem:ClientMount",
                        "elasticfilesystem:ClientWrite",
                        "elasticfilesystem:ClientRootAccess",
                    ],
                    "Resource": fs.arn,
                    "Condition": {"StringNotEquals": {"elasticfilesystem:AccessPointArn": ap.arn}},
                },
            ),
            opts=stateful,
        )
        self.file_system_id = fs.id
        self.access_point_id = ap.id
        self.volume_handle = pulumi.Output.all(fs.id, ap.id).apply(
            lambda ids: f"{ids[0]}::{ids[1]}"
        )
        self.register_outputs(
            {
                "file_system_id": self.file_system_id,
                "access_point_id": self.access_point_id,
                "volume_handle": self.volume_handle,
                "mount_target_ids": [m.id for m in self.mount_targets],
            }
        )
