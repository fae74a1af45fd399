"""AWS adapter: EKS lookups, EFS + S3 + IRSA, and the StorageWiring they give the RayCluster."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.artifact_bucket import ArtifactBucket, ArtifactBucketArgs
from components.aws_policy import policy_json
from components.efs_file_system import EfsFileSystem, EfsFileSystemArgs
from components.irsa_role import IrsaRole, IrsaRoleArgs
from components.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import StorageWiring
from infra.adapters import CloudStorage
from infra.settings import Settings, setting_error

RAY_SERVICE_ACCOUNT = "ray"
EFS_CSI_SERVICE_ACCOUNT = "efs-csi-controller-sa"


@dataclass(frozen=True)
class Subnet:
    id: str
    availability_zone: str
    map_public_ip_on_launch: bool
    tags: Mapping[str, str]

    @property
    def tagged_private(self) -> bool:
        """EKS's convention: private subnets carry kubernetes.io/role/internal-elb."""
        return "kubernetes.io/role/internal-elb" in self.tags


@dataclass(frozen=True)
class EksCluster:
    """What the program needs to know about an existing EKS cluster, looked up by name."""

    name: str
    arn: str
    endpoint: str
    certificate_authority: str
    vpc_id: str
    cluster_security_group_id: str
    subnets: tuple[Subnet, ...]
    oidc_issuer: str
    """Issuer without https://."""
    oidc_provider_arn: str
    partition: str


def one_private_subnet_per_zone(subnets: Iterable[Subnet]) -> dict[str, str]:
    """EFS allows one mount target per zone, and every zone with nodes needs one: zone → the
    best subnet there. Preferred: tagged kubernetes.io/role/internal-elb (EKS's private), then
    one that maps no public IPs and is not tagged for public load balancers, then any (a mount
    target only needs to be in the zone and the VPC; its security group does the guarding).
    """
    chosen: dict[str, str] = {}
    by_zone: dict[str, list[Subnet]] = {}
    for subnet in sorted(subnets, key=lambda s: s.id):
        by_zone.setdefault(subnet.availability_zone, []).append(subnet)
    for zone, candidates in by_zone.items():
        tagged = [s for s in candidates if s.tagged_private]
        quiet = [
            s
            for s in candidates
            if not s.map_public_ip_on_launch and "kubernetes.io/role/elb" not in s.tags
        ]
        chosen[zone] = (tagged or quiet or candidates)[0].id
    return dict(sorted(chosen.items()))


def mount_subnets(settings: Settings, cluster: EksCluster) -> dict[str, str]:
    """The EFS mount-target subnets, or a settings error if the cluster offers none."""
    if not settings.storage.shared_filesystem.enabled:
        return {}
    chosen = one_private_subnet_per_zone(cluster.subnets)
    if not chosen:
        raise setting_error(
            "kubernetes.clusterName", cluster.name, "has no subnets for EFS mount targets"
        )
    return chosen


def _reason(err: Exception) -> str:
    """The last line of a data-source failure: the provider's own words."""
    text = str(err).strip()
    return text.splitlines()[-1] if text else repr(err)


def lookup_cluster(name: str) -> EksCluster:
    """Data-source lookups from the cluster's name: VPC, subnets, security group, OIDC issuer."""
    try:
        cluster = aws.eks.get_cluster(name=name)
    except Exception as err:
        raise setting_error(
            "kubernetes.clusterName", name, f"could not be looked up: {_reason(err)}"
        ) from None
    vpc = cluster.vpc_config
    issuer_url = cluster.identities[0].oidcs[0].issuer
    issuer = issuer_url.removeprefix("https://")
    try:
        oidc = aws.iam.get_open_id_connect_provider(url=issuer_url)
    except Exception as err:
        reason = _reason(err)
        if "not found" in reason.lower() or "nosuchentity" in reason.lower():
            raise setting_error(
                "kubernetes.clusterName",
                name,
                f"has no IAM OIDC provider for {issuer}; IRSA needs one "
                f"(eksctl utils associate-iam-oidc-provider --cluster {name} --approve)",
            ) from None
        raise setting_error(
            "kubernetes.clusterName",
            name,
            f"has an IAM OIDC provider for {issuer} that could not be looked up: {reason}",
        ) from None
    subnets = tuple(
        Subnet(
            id=s.id,
            availability_zone=s.availability_zone,
            map_public_ip_on_launch=s.map_public_ip_on_launch,
            tags=dict(s.tags or {}),
        )
        for s in (aws.ec2.get_subnet(id=subnet_id) for subnet_id in vpc.subnet_ids)
    )
    return EksCluster(
        name=name,
        arn=cluster.arn,
        endpoint=cluster.endpoint,
        certificate_authority=cluster.certificate_authorities[0].data,
        vpc_id=vpc.vpc_id,
        cluster_security_group_id=vpc.cluster_security_group_id,
        subnets=subnets,
        oidc_issuer=issuer,
        oidc_provider_arn=oidc.arn,
        partition=aws.get_partition().partition,
    )


def kubeconfig(cluster: EksCluster, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no long-lived credentials)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster.name,
                    "cluster": {
                        "server": cluster.endpoint,
                        "certificate-authority-data": cluster.certificate_authority,
                    },
                }
            ],
            "users": [
                {
                    "name": cluster.name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster.name,
                                "--region",
                                region,
                            ],
                        }
                    },
                }
            ],
            "contexts": [
                {"name": cluster.name, "context": {"cluster": cluster.name, "user": cluster.name}}
            ],
            "current-context": cluster.name,
        },
        sort_keys=True,
    )


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


def kubernetes_provider(settings: Settings, cluster: EksCluster) -> k8s.Provider:
    assert settings.region is not None
    return k8s.Provider("eks", kubeconfig=kubeconfig(cluster, settings.region))


def build_storage(
    settings: Settings,
    cluster: EksCluster,
    subnets_by_zone: Mapping[str, str],
    k8s_opts: pulumi.ResourceOptions,
    tags: Mapping[str, str],
) -> CloudStorage:
    """EFS (+ PV/PVC), the S3 bucket, and the IRSA role/ServiceAccount Ray runs as."""
    assert settings.region is not None
    storage = settings.storage
    # Stateful resources: protected and kept on delete in prod, destroyable in dev.
    stateful = pulumi.ResourceOptions(protect=settings.protect, retain_on_delete=settings.protect)
    namespace = settings.kubernetes.namespace
    outputs: dict[str, pulumi.Input[str]] = {}

    dependencies: list[pulumi.Resource] = []
    claim_name: str | None = None
    if storage.shared_filesystem.enabled:
        efs = EfsFileSystem(
            "shared-fs",
            EfsFileSystemArgs(
                vpc_id=cluster.vpc_id,
                subnets_by_zone=subnets_by_zone,
                cluster_security_group_id=cluster.cluster_security_group_id,
                extra_security_group_ids=storage.shared_filesystem.allowed_security_groups,
                kms_key_arn=storage.shared_filesystem.kms_key_arn,
                backup=settings.mode == "prod",
                stateful=stateful,
                tags=tags,
            ),
        )
        volume_deps: list[pulumi.Resource] = list(efs.mount_targets)
        if settings.aws.efs_csi_driver == "install":
            volume_deps.append(_efs_csi_driver(settings, cluster, tags))
        volume = SharedVolume(
            "shared",
            SharedVolumeArgs(
                namespace=namespace,
                claim_name="ray-shared",
                source={"csi": {"driver": "efs.csi.aws.com", "volumeHandle": efs.volume_handle}},
                capacity=storage.shared_filesystem.size,
                # Access points need TLS; the file-system policy refuses anything else.
                mount_options=("tls",),
                opts=pulumi.ResourceOptions.merge(
                    k8s_opts, pulumi.ResourceOptions(depends_on=volume_deps)
                ),
            ),
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
                kms=settings.mode == "prod",
                force_destroy=settings.mode == "dev",
                stateful=stateful,
                tags=tags,
            ),
        )
        prefix = settings.bucket_prefix
        bucket_uri = bucket.bucket_name.apply(lambda name: f"s3://{name}/{prefix}")
        policy = policy_json(
            *bucket_access_statements(bucket.bucket_arn, settings.bucket_prefix, bucket.kms_key_arn)
        )
        outputs["bucketUri"] = bucket_uri

    irsa = IrsaRole(
        "ray-irsa",
        IrsaRoleArgs(
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_issuer=cluster.oidc_issuer,
            namespace=namespace,
            service_account_name=RAY_SERVICE_ACCOUNT,
            policy_json=policy,
            kubernetes_opts=k8s_opts,
            tags=tags,
        ),
    )
    outputs["irsaRoleArn"] = irsa.role_arn
    dependencies.append(irsa)

    region = settings.region
    mount_path = storage.shared_filesystem.mount_path if claim_name is not None else None
    wiring = StorageWiring(
        service_account_name=RAY_SERVICE_ACCOUNT,
        shared_claim_name=claim_name,
        shared_mount_path=mount_path,
        bucket_uri=bucket_uri,
        env=(("AWS_REGION", region), ("AWS_DEFAULT_REGION", region)),
    )
    return CloudStorage(wiring, dependencies, outputs)


def _efs_csi_driver(
    settings: Settings, cluster: EksCluster, tags: Mapping[str, str]
) -> pulumi.Resource:
    """The aws-efs-csi-driver EKS add-on with its own IRSA role (AWS-managed policy)."""
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
