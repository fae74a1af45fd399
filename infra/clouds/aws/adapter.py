"""AWS adapter: EKS lookups, then EFS + S3 + IRSA and the StorageWiring they give the RayCluster."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws.efs_file_system import EfsFileSystem, EfsFileSystemArgs
from components.aws.irsa_role import IrsaRole, IrsaRoleArgs
from components.aws.policy import policy_json
from components.aws.s3_bucket import S3Bucket, S3BucketArgs
from components.kuberay.image import RAY_GID, RAY_UID
from components.kuberay.network_policy import egress_to
from components.kubernetes.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import SHARED_VOLUME, WORKING_DIRS, StorageWiring
from infra.clouds.adapter import (
    HEAD_SERVICE_ACCOUNT,
    SHARED_CLAIM,
    WORKER_SERVICE_ACCOUNT,
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
)
from infra.clouds.aws.lookup import (
    EksCluster,
    alias_target,
    kubeconfig,
    lookup_cluster,
    one_private_subnet_per_zone,
)
from infra.clouds.aws.settings import AwsSettings
from infra.settings import Settings, setting_error

# The add-on's controller and node ServiceAccounts (efs-csi-controller-sa, efs-csi-node-sa).
EFS_CSI_SERVICE_ACCOUNTS = "efs-csi-*"


def bucket_access_statements(
    bucket_arn: pulumi.Input[str], prefix: str, kms_key_arn: pulumi.Input[str] | None
) -> list[dict[str, object]]:
    """Least privilege on the stack's prefix: list under it, read/write objects in it, no `*`."""
    statements: list[dict[str, object]] = [
        {
            "Sid": "ListStackPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            # The bare prefix too: `aws s3 ls s3://bucket/ray/dev` lists with prefix=ray/dev.
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/", f"{prefix}/*"]}},
        },
        {
            "Sid": "ObjectsUnderStackPrefix",
            "Effect": "Allow",
            "Action": [
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject",
            ],
            "Resource": pulumi.Output.from_input(bucket_arn).apply(lambda arn: f"{arn}/{prefix}/*"),
        },
    ]
    if kms_key_arn is not None:
        statements.append(
            {
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            }
        )
    return statements


def efs_kms_key(key: str | None, provider: aws.Provider) -> str | None:
    """The EFS key as the setting names it: a key ARN, used as is.

    An EFS file system's key is fixed at creation (`kms_key_id` replaces the file system), and
    an alias is a pointer that a key rotation re-points. Resolving it on every run would let
    that rotation, outside these settings, plan a new (empty) file system; resolving it once and
    ignoring later changes would hide a deliberate change of the setting. So only a key ARN is
    taken: the file system's key changes only when this setting does (prod: refused by
    `protect`; dev: a reviewed replacement).
    """
    if key is None or ":alias/" not in key:
        return key
    target = alias_target(key, provider)
    alias = "alias/" + key.split(":alias/", 1)[1]
    now = (
        f"it names {target} now"
        if target
        else f"aws kms describe-key --key-id {alias} --query KeyMetadata.Arn"
    )
    raise setting_error(
        "aws.efs.kmsKeyArn",
        key,
        "is an alias, which a key rotation can re-point, and a file system's key cannot change "
        f"without replacing it: set the key ARN instead ({now})",
    )


class AwsAdapter(CloudAdapter):
    """EKS + EFS + S3 + IRSA."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.aws = block = self.block(AwsSettings)
        self.provider = aws.Provider("aws", region=block.region)
        self.cluster: EksCluster = lookup_cluster(block.cluster_name, self.provider)
        self.efs_kms_key = efs_kms_key(block.efs.kms_key_arn, self.provider)
        self.mount_subnets: Mapping[str, str] = {}
        if settings.storage.shared_filesystem.enabled:
            self.mount_subnets = self._mount_subnets()

    def _mount_subnets(self) -> dict[str, str]:
        """Zone → mount-target subnet: the named ones, or one per zone of the whole VPC."""
        named = self.aws.efs.subnet_ids
        if not named:
            chosen = one_private_subnet_per_zone(self.cluster.subnets)
            if not chosen:
                raise setting_error(
                    "aws.clusterName", self.cluster.name, "has no subnets for EFS mount targets"
                )
            return chosen
        in_vpc = {s.id: s for s in self.cluster.subnets}
        by_zone: dict[str, str] = {}
        for subnet_id in named:
            if subnet_id not in in_vpc:
                raise setting_error(
                    "aws.efs.subnetIds",
                    list(named),
                    f"has {subnet_id}, not a subnet of the cluster's VPC {self.cluster.vpc_id}",
                )
            zone = in_vpc[subnet_id].availability_zone
            if zone in by_zone:
                raise setting_error(
                    "aws.efs.subnetIds",
                    list(named),
                    f"has two subnets in {zone}; EFS allows one mount target per zone",
                )
            by_zone[zone] = subnet_id
        return dict(sorted(by_zone.items()))

    def egress_allowances(self) -> tuple[Mapping[str, object], ...]:
        # IRSA exchanges its token with STS over HTTPS; EKS Pod Identity (if a user adds it) has
        # its agent on 169.254.170.23:80.
        return (egress_to("169.254.170.23/32", 80),)

    def kubernetes_provider(self) -> k8s.Provider:
        return k8s.Provider("eks", kubeconfig=kubeconfig(self.cluster, self.aws.region))

    def storage_and_identity(self, target: KubernetesTarget) -> CloudStorage:
        """EFS (+ PV/PVC), the S3 bucket, and the IRSA role/ServiceAccount Ray runs as."""
        settings, cluster, tags = self.settings, self.cluster, self.tags()
        storage = settings.storage
        stateful = settings.stateful
        outputs: dict[str, pulumi.Input[str]] = {}

        dependencies: list[pulumi.Resource] = []
        claim_name: str | None = None
        if storage.shared_filesystem.enabled:
            cidrs, groups = self._nfs_sources()
            efs = EfsFileSystem(
                "shared-fs",
                EfsFileSystemArgs(
                    vpc_id=cluster.vpc_id,
                    subnets_by_zone=self.mount_subnets,
                    nfs_from_cidrs=cidrs,
                    nfs_from_security_groups=groups,
                    kms_key_arn=self.efs_kms_key,
                    backup=stateful.backups,
                    protect=stateful.protect,
                    posix_uid=RAY_UID,
                    posix_gid=RAY_GID,
                    tags=tags,
                ),
                opts=self.with_provider(self.provider),
            )
            volume_deps: list[pulumi.Resource] = list(efs.mount_targets)
            if self.aws.efs_csi_driver == "install":
                volume_deps.append(self._efs_csi_driver())
            volume = SharedVolume(
                SHARED_VOLUME,
                SharedVolumeArgs(
                    namespace=target.namespace,
                    claim_name=SHARED_CLAIM,
                    source={
                        "csi": {"driver": "efs.csi.aws.com", "volumeHandle": efs.volume_handle}
                    },
                    capacity=storage.shared_filesystem.size,
                    # No `tls` mount option: with an access point in the volume handle the CSI
                    # driver mounts with TLS itself (and warns when also told to).
                ),
                opts=target.component_opts(*volume_deps),
            )
            claim_name = volume.claim_name
            dependencies.append(volume)
            outputs["fileSystemId"] = efs.file_system_id
            outputs["sharedMountPath"] = storage.shared_filesystem.mount_path

        bucket_uri: pulumi.Output[str] | None = None
        policy: pulumi.Output[str] | None = None
        if storage.artifact_bucket.enabled:
            bucket = S3Bucket(
                "artifacts",
                S3BucketArgs(
                    kms=stateful.customer_managed_keys,
                    force_destroy=stateful.force_destroy,
                    protect=stateful.protect,
                    noncurrent_version_days=storage.artifact_bucket.noncurrent_version_days,
                    expiring_prefixes={
                        f"{settings.bucket_prefix}/{WORKING_DIRS}/": (
                            storage.artifact_bucket.working_dir_expiry_days
                        )
                    },
                    tags=tags,
                ),
                opts=self.with_provider(self.provider),
            )
            prefix = settings.bucket_prefix
            bucket_uri = bucket.bucket_name.apply(lambda name: f"s3://{name}/{prefix}")
            policy = policy_json(
                *bucket_access_statements(bucket.bucket_arn, prefix, bucket.kms_key_arn)
            )
            outputs["bucketUri"] = bucket_uri

        irsa = IrsaRole(
            "ray-irsa",
            IrsaRoleArgs(
                oidc_provider_arn=cluster.oidc_provider_arn,
                oidc_issuer=cluster.oidc_issuer,
                namespace=target.namespace,
                # Head and workers: the same bucket identity, separate Kubernetes rights.
                service_accounts=(HEAD_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT),
                without_api_token=frozenset({WORKER_SERVICE_ACCOUNT}),
                policy_json=policy,
                tags=tags,
            ),
            opts=self.with_provider(self.provider, target.component_opts()),
        )
        outputs["irsaRoleArn"] = irsa.role_arn
        dependencies.append(irsa)

        region = self.aws.region
        wiring = StorageWiring(
            service_account_name=HEAD_SERVICE_ACCOUNT,
            worker_service_account_name=WORKER_SERVICE_ACCOUNT,
            shared_claim_name=claim_name,
            shared_mount_path=storage.shared_filesystem.mount_path if claim_name else None,
            bucket_uri=bucket_uri,
            env=(("AWS_REGION", region), ("AWS_DEFAULT_REGION", region)),
        )
        return CloudStorage(wiring, dependencies, outputs)

    def _efs_csi_driver(self) -> pulumi.Resource:
        """The aws-efs-csi-driver EKS add-on with its own IRSA role (AWS-managed policy)."""
        cluster, tags = self.cluster, self.tags()
        role = IrsaRole(
            "efs-csi-irsa",
            IrsaRoleArgs(
                oidc_provider_arn=cluster.oidc_provider_arn,
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
            opts=self.with_provider(self.provider),
        )
        return aws.eks.Addon(
            "efs-csi-driver",
            cluster_name=cluster.name,
            addon_name="aws-efs-csi-driver",
            addon_version=self.aws.efs_csi_driver_version,
            service_account_role_arn=role.role_arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=dict(tags),
            # A cluster-wide driver other workloads may mount with: `destroy` leaves it.
            opts=pulumi.ResourceOptions(retain_on_delete=True, provider=self.provider),
        )

    def _nfs_sources(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Who may reach NFS: the VPC's CIDRs by default (node groups with their own security
        groups, Karpenter and self-managed nodes do not carry the cluster security group), or
        the cluster security group plus the named ones."""
        named = self.aws.efs.allowed_security_groups
        if not named:
            return self.cluster.vpc_cidrs, ()
        return (), tuple(dict.fromkeys((self.cluster.cluster_security_group_id, *named)))
