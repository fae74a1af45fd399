"""The identity Ray runs as on EKS: one IRSA role for the head's and the workers' Kubernetes
ServiceAccounts, carrying the bucket's policy (when there is a bucket)."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from components.aws.irsa_role import IrsaRole, IrsaRoleArgs
from components.kuberay.network_policy import egress_to
from infra.clouds.adapter import (
    HEAD_SERVICE_ACCOUNT,
    WORKER_SERVICE_ACCOUNT,
    KubernetesTarget,
    WiringPart,
    with_provider,
)
from infra.clouds.aws.lookup import EksCluster


def pod_identity_egress() -> tuple[Mapping[str, object], ...]:
    """IRSA exchanges its token with STS over HTTPS (open anyway); EKS Pod Identity, if a user
    adds it, has its agent on 169.254.170.23:80."""
    return (egress_to("169.254.170.23/32", 80),)


def irsa(
    cluster: EksCluster,
    *,
    policy: pulumi.Input[str] | None,
    tags: Mapping[str, str],
    provider: aws.Provider,
    target: KubernetesTarget,
) -> WiringPart:
    """The role and both ServiceAccounts annotated with it; only the head's mounts a token for
    the Kubernetes API (the autoscaler's)."""
    role = IrsaRole(
        "ray-irsa",
        IrsaRoleArgs(
            oidc_provider_arn=cluster.irsa_provider_arn,
            oidc_issuer=cluster.oidc_issuer,
            namespace=target.namespace,
            # Head and workers: the same bucket identity, separate Kubernetes rights.
            service_accounts=(HEAD_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT),
            without_api_token=frozenset({WORKER_SERVICE_ACCOUNT}),
            policy_json=policy,
            tags=tags,
        ),
        opts=with_provider(provider, target.component_opts()),
    )
    return WiringPart(
        wiring={
            "service_account_name": HEAD_SERVICE_ACCOUNT,
            "worker_service_account_name": WORKER_SERVICE_ACCOUNT,
        },
        dependencies=(role,),
        outputs={"irsaRoleArn": role.role_arn},
    )
