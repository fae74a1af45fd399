"""IrsaRole: an IAM role that exactly one Kubernetes ServiceAccount may assume (IRSA)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws_policy import policy_json
from components.options import waiting_child
from components.wiring import MANAGED_LABELS


@dataclass(frozen=True)
class IrsaRoleArgs:
    """Inputs of an IrsaRole. The Kubernetes provider comes through `opts.providers`; what the
    ServiceAccount waits for (its namespace) through `opts.depends_on`."""

    oidc_provider_arn: pulumi.Input[str]
    """The EKS cluster's IAM OIDC provider."""
    oidc_issuer: str
    """The issuer host and path, without https:// (e.g. oidc.eks.us-west-2.amazonaws.com/id/X)."""
    namespace: str
    service_account_name: str
    policy_json: pulumi.Input[str] | None = None
    """An inline policy (JSON) for the role."""
    managed_policy_arns: Sequence[pulumi.Input[str]] = ()
    create_service_account: bool = True
    """Also create the annotated Kubernetes ServiceAccount (False when e.g. an EKS add-on does)."""
    tags: Mapping[str, str] = field(default_factory=dict)


def trust_statement(
    oidc_provider_arn: pulumi.Input[str], issuer: str, namespace: str, sa: str
) -> dict[str, object]:
    """Only `system:serviceaccount:<ns>:<sa>`, audience sts.amazonaws.com, may assume the role."""
    return {
        "Effect": "Allow",
        "Principal": {"Federated": oidc_provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{sa}",
                f"{issuer}:aud": "sts.amazonaws.com",
            }
        },
    }


class IrsaRole(pulumi.ComponentResource):
    """IAM role + inline/managed policies + (optionally) the annotated ServiceAccount."""

    role_arn: pulumi.Output[str]
    """The role's ARN (the ServiceAccount's eks.amazonaws.com/role-arn)."""
    service_account_name: str
    """The Kubernetes ServiceAccount bound to the role."""

    def __init__(
        self, name: str, args: IrsaRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:aws:IrsaRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        issuer = args.oidc_issuer.removeprefix("https://")
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=policy_json(
                trust_statement(
                    args.oidc_provider_arn, issuer, args.namespace, args.service_account_name
                )
            ),
            description=(
                f"IRSA for system:serviceaccount:{args.namespace}:{args.service_account_name}"
            ),
            tags=dict(args.tags),
            opts=child,
        )
        if args.policy_json is not None:
            aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=args.policy_json, opts=child)
        for i, arn in enumerate(args.managed_policy_arns):
            aws.iam.RolePolicyAttachment(
                f"{name}-managed-{i}", role=role.name, policy_arn=arn, opts=child
            )
        if args.create_service_account:
            k8s.core.v1.ServiceAccount(
                f"{name}-sa",
                metadata={
                    "name": args.service_account_name,
                    "namespace": args.namespace,
                    "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                    "labels": dict(MANAGED_LABELS),
                },
                opts=waiting_child(self, opts),
            )
        self.role_arn = role.arn
        self.service_account_name = args.service_account_name
        self.register_outputs({"role_arn": self.role_arn})
