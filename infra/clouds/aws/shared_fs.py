"""EKS's shared file system: an EFS file system with a mount target per zone, the EFS CSI driver
add-on when the stack installs it, and the PersistentVolume + claim every Ray pod mounts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from components.aws.efs_file_system import EfsFileSystem, EfsFileSystemArgs
from components.aws.irsa_role import IrsaRole, IrsaRoleArgs
from components.kuberay.image import RAY_GID, RAY_UID
from components.kubernetes.labels import stack_labels
from components.kubernetes.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import SHARED_VOLUME
from infra.clouds.adapter import SHARED_CLAIM, KubernetesTarget, WiringPart, with_provider
from infra.clouds.aws.lookup import EksCluster, one_private_subnet_per_zone
from infra.clouds.aws.settings import AwsSettings
from infra.settings import Settings
from infra.settings.errors import message

# The add-on's controller and node ServiceAccounts (efs-csi-controller-sa, efs-csi-node-sa).
EFS_CSI_SERVICE_ACCOUNTS = "efs-csi-*"


def is_alias(key: str | None) -> bool:
    """A KMS alias ARN (`arn:…:alias/name`), not a key ARN: refused for EFS (`eks_problems`)."""
    return key is not None and ":alias/" in key


def mount_subnets(cluster: EksCluster, named: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Zone → mount-target subnet: the named ones, or one per zone of the whole VPC; and every
    problem with them (`eks_problems` reports those, this module builds from the zones)."""
    if not named:
        chosen = one_private_subnet_per_zone(cluster.subnets)
        if not chosen:
            return {}, [
                message("aws.clusterName", cluster.name, "has no subnets for EFS mount targets")
            ]
        return chosen, []
    in_vpc = {s.id: s for s in cluster.subnets}
    by_zone: dict[str, str] = {}
    problems: list[str] = []
    crowded: set[str] = set()
    for subnet_id in named:
        if subnet_id not in in_vpc:
            problems.append(
                message(
                    "aws.efs.subnetIds",
                    list(named),
                    f"has {subnet_id}, not a subnet of the cluster's VPC {cluster.vpc_id}",
                )
            )
            continue
        zone = in_vpc[subnet_id].availability_zone
        if zone in by_zone:
            if zone not in crowded:
                crowded.add(zone)
                problems.append(
                    message(
                        "aws.efs.subnetIds",
                        list(named),
                        f"has two subnets in {zone}; EFS allows one mount target per zone",
                    )
                )
            continue
        by_zone[zone] = subnet_id
    return dict(sorted(by_zone.items())), problems


def nfs_sources(
    cluster: EksCluster, named: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Who may reach NFS: the VPC's CIDRs by default (node groups with their own security
    groups, Karpenter and self-managed nodes do not carry the cluster security group), or
    the cluster security group plus the named ones."""
    if not named:
        return cluster.vpc_cidrs, ()
    return (), tuple(dict.fromkeys((cluster.cluster_security_group_id, *named)))


def efs_csi_driver(
    cluster: EksCluster, block: AwsSettings, *, tags: Mapping[str, str], provider: aws.Provider
) -> pulumi.Resource:
    """The aws-efs-csi-driver EKS add-on with its own IRSA role (AWS-managed policy)."""
    role = IrsaRole(
        "efs-csi-irsa",
        IrsaRoleArgs(
            oidc_provider_arn=cluster.irsa_provider_arn,
            oidc_issuer=cluster.oidc_issuer,
            namespace="kube-system",
            service_accounts=(EFS_CSI_SERVICE_ACCOUNTS,),
            managed_policy_arns=(
                f"arn:{cluster.partition}:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy",
            ),
            create_service_accounts=False,
            # Kept with the add-on it serves: a retained driver without its role would lose
            # its credentials.
            retain=True,
            tags=tags,
        ),
        opts=with_provider(provider),
    )
    return aws.eks.Addon(
        "efs-csi-driver",
        cluster_name=cluster.name,
        addon_name="aws-efs-csi-driver",
        addon_version=block.efs_csi_driver_version,
        service_account_role_arn=role.role_arn,
        resolve_conflicts_on_create="OVERWRITE",
        resolve_conflicts_on_update="PRESERVE",
        tags=dict(tags),
        # A cluster-wide driver other workloads may mount with: `destroy` leaves it.
        opts=pulumi.ResourceOptions(retain_on_delete=True, provider=provider),
    )


def shared_filesystem(
    settings: Settings,
    block: AwsSettings,
    cluster: EksCluster,
    *,
    tags: Mapping[str, str],
    provider: aws.Provider,
    target: KubernetesTarget,
) -> WiringPart:
    """EFS (+ its CSI driver, when installed here) and the claim Ray pods mount."""
    storage, stateful = settings.storage, settings.stateful
    cidrs, groups = nfs_sources(cluster, block.efs.allowed_security_groups)
    efs = EfsFileSystem(
        "shared-fs",
        EfsFileSystemArgs(
            vpc_id=cluster.vpc_id,
            subnets_by_zone=mount_subnets(cluster, block.efs.subnet_ids)[0],
            nfs_from_cidrs=cidrs,
            nfs_from_security_groups=groups,
            # A key ARN only (an alias is refused by eks_problems): the file system's key
            # changes only when this setting does.
            kms_key_arn=block.efs.kms_key_arn,
            backup=stateful.backups,
            protect=stateful.protect,
            posix_uid=RAY_UID,
            posix_gid=RAY_GID,
            tags=tags,
        ),
        opts=with_provider(provider),
    )
    volume_deps: list[pulumi.Resource] = list(efs.mount_targets)
    if block.efs_csi_driver == "install":
        volume_deps.append(efs_csi_driver(cluster, block, tags=tags, provider=provider))
    mount_path = storage.shared_filesystem.mount_path
    volume = SharedVolume(
        SHARED_VOLUME,
        SharedVolumeArgs(
            namespace=target.namespace,
            claim_name=SHARED_CLAIM,
            source={"csi": {"driver": "efs.csi.aws.com", "volumeHandle": efs.volume_handle}},
            capacity=storage.shared_filesystem.size,
            labels=stack_labels(settings.stack),
            # No `tls` mount option: with an access point in the volume handle the CSI driver
            # mounts with TLS itself (and warns when also told to).
        ),
        opts=target.component_opts(*volume_deps),
    )
    return WiringPart(
        wiring={"shared_claim_name": volume.claim_name, "shared_mount_path": mount_path},
        dependencies=(volume,),
        outputs={"fileSystemId": efs.file_system_id, "sharedMountPath": mount_path},
    )
