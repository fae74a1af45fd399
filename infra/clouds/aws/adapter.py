"""AWS adapter: EKS lookups, then EFS + S3 + IRSA and the StorageWiring they give the RayCluster."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.artifact_bucket import ArtifactBucket, ArtifactBucketArgs
from components.aws_policy import policy_json
from components.efs_file_system import EfsFileSystem, EfsFileSystemArgs
from components.irsa_role import IrsaRole, IrsaRoleArgs
from components.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import StorageWiring
from infra.clouds.adapter import (
    RAY_SERVICE_ACCOUNT,
    SHARED_CLAIM,
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
)
from infra.clouds.aws.lookup import (
    EksCluster,
    kubeconfig,
    lookup_cluster,
    one_private_subnet_per_zone,
)
from infra.clouds.aws.settings import AwsSettings
from infra.settings import Settings, setting_error

EFS_CSI_SERVICE_ACCOUNT = "efs-csi-controller-sa"


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
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}},
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


class AwsAdapter(CloudAdapter):
    """EKS + EFS + S3 + IRSA."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        block = settings.cloud_settings
        assert isinstance(block, AwsSettings)
        self.aws = block
        self.cluster: EksCluster = lookup_cluster(block.cluster_name)
        self.mount_subnets: Mapping[str, str] = {}
        if settings.storage.shared_filesystem.enabled:
            self.mount_subnets = one_private_subnet_per_zone(self.cluster.subnets)
            if not self.mount_subnets:
                raise setting_error(
                    "aws.clusterName", block.cluster_name, "has no subnets for EFS mount targets"
                )

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
            efs = EfsFileSystem(
                "shared-fs",
                EfsFileSystemArgs(
                    vpc_id=cluster.vpc_id,
                    subnets_by_zone=self.mount_subnets,
                    cluster_security_group_id=cluster.cluster_security_group_id,
                    extra_security_group_ids=self.aws.efs.allowed_security_groups,
                    kms_key_arn=self.aws.efs.kms_key_arn,
                    backup=stateful.backups,
                    protect=stateful.protect,
                    tags=tags,
                ),
            )
            volume_deps: list[pulumi.Resource] = list(efs.mount_targets)
            if self.aws.efs_csi_driver == "install":
                volume_deps.append(self._efs_csi_driver())
            volume = SharedVolume(
                "shared",
                SharedVolumeArgs(
                    namespace=target.namespace,
                    claim_name=SHARED_CLAIM,
                    source={
                        "csi": {"driver": "efs.csi.aws.com", "volumeHandle": efs.volume_handle}
                    },
                    capacity=storage.shared_filesystem.size,
                    # Access points need TLS; the file-system policy refuses anything else.
                    mount_options=("tls",),
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
            bucket = ArtifactBucket(
                "artifacts",
                ArtifactBucketArgs(
                    kms=stateful.customer_managed_keys,
                    force_destroy=stateful.force_destroy,
                    protect=stateful.protect,
                    tags=tags,
                ),
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
                service_account_name=RAY_SERVICE_ACCOUNT,
                policy_json=policy,
                tags=tags,
            ),
            opts=target.component_opts(),
        )
        outputs["irsaRoleArn"] = irsa.role_arn
        dependencies.append(irsa)

        region = self.aws.region
        wiring = StorageWiring(
            service_account_name=RAY_SERVICE_ACCOUNT,
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
                service_account_name=EFS_CSI_SERVICE_ACCOUNT,
                managed_policy_arns=(
                    f"arn:{cluster.partition}:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy",
                ),
                create_service_account=False,
                tags=tags,
            ),
        )
        return aws.eks.Addon(
            "efs-csi-driver",
            cluster_name=cluster.name,
            addon_name="aws-efs-csi-driver",
            service_account_role_arn=role.role_arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=dict(tags),
        )
