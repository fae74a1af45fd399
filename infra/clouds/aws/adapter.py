"""AWS adapter: EKS lookups and checks, then its concerns composed into the StorageWiring: EFS
(`shared_fs.py`), the S3 bucket (`bucket.py`), IRSA (`identity.py`), the app image's ECR
repository in prod (`registry.py`); the cluster checks are `checks.py`."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.clouds.adapter import (
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
    WiringPart,
    compose,
    raise_problems,
)
from infra.clouds.aws.bucket import artifact_bucket
from infra.clouds.aws.checks import eks_problems
from infra.clouds.aws.identity import irsa, pod_identity_egress
from infra.clouds.aws.lookup import EksCluster, alias_target, kubeconfig, lookup_cluster
from infra.clouds.aws.registry import image_repository
from infra.clouds.aws.settings import AwsSettings
from infra.clouds.aws.shared_fs import is_alias, shared_filesystem
from infra.settings import Settings


class AwsAdapter(CloudAdapter):
    """EKS + EFS + S3 + IRSA (+ ECR in prod)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.aws = block = self.block(AwsSettings)
        self.provider = aws.Provider("aws", region=block.region)
        self.cluster: EksCluster = lookup_cluster(block.cluster_name, self.provider)
        key = block.efs.kms_key_arn
        # Only for the refusal's message: which key the alias names now.
        target = alias_target(key, self.provider) if key and is_alias(key) else None
        raise_problems(eks_problems(self.cluster, settings, efs_key_alias_target=target))

    def egress_allowances(self) -> tuple[Mapping[str, object], ...]:
        return pod_identity_egress()

    def kubernetes_provider(self) -> k8s.Provider:
        return k8s.Provider("eks", kubeconfig=kubeconfig(self.cluster, self.aws.region))

    def storage_and_identity(self, target: KubernetesTarget) -> CloudStorage:
        """EFS, the bucket, the identity carrying the bucket's policy, the image repository (prod):
        in this order (the stack's outputs and Ray's dependencies keep it)."""
        settings, cluster, block, tags = self.settings, self.cluster, self.aws, self.tags()
        region = block.region
        # The stack's region, for the AWS SDKs and CLI in Ray code.
        parts = [
            WiringPart(wiring={"env": (("AWS_REGION", region), ("AWS_DEFAULT_REGION", region))})
        ]
        if settings.storage.shared_filesystem.enabled:
            parts.append(
                shared_filesystem(
                    settings, block, cluster, tags=tags, provider=self.provider, target=target
                )
            )
        policy = None
        if settings.storage.artifact_bucket.enabled:
            bucket = artifact_bucket(settings, tags=tags, provider=self.provider)
            policy = bucket.policy
            parts.append(bucket.part)
        parts.append(irsa(cluster, policy=policy, tags=tags, provider=self.provider, target=target))
        if settings.stateful.image_repository:
            parts.append(image_repository(settings, block, tags=tags, provider=self.provider))
        return compose(*parts)
