"""IrsaRole: an IAM role that exactly one Kubernetes ServiceAccount may assume (IRSA)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws.policy import policy_json
from components.kubernetes.labels import MANAGED_LABELS
from components.options import waiting_child


@dataclass(frozen=True)
class IrsaRoleArgs:
    """Inputs of an IrsaRole. The Kubernetes provider comes through `opts.providers`; what the
    ServiceAccount waits for (its namespace) through `opts.depends_on`."""

    oidc_provider_arn: pulumi.Input[str]
    """The EKS cluster's IAM OIDC provider."""
    oidc_issuer: str
    """The issuer host and path, without https:// (e.g. oidc.eks.us-west-2.amazonaws.com/id/X)."""
    namespace: str
    service_accounts: Sequence[str]
    """The Kubernetes ServiceAccounts that may assume the role. A name with `*` is a pattern
    (matched with StringLike, as AWS's EFS CSI add-on guide writes its node and controller
    accounts); exact names are matched with StringEquals."""
    policy_json: pulumi.Input[str] | None = None
    """An inline policy (JSON) for the role."""
    managed_policy_arns: Sequence[pulumi.Input[str]] = ()
    without_api_token: frozenset[str] = frozenset()
    """Accounts whose pods get no Kubernetes API token mounted (Ray workers need none)."""
    retain: bool = False
    """Keep the role and its policies on delete (for what outlives the stack, e.g. a cluster-wide
    driver's identity)."""
    create_service_accounts: bool = True
    """Also create the annotated Kubernetes ServiceAccounts (False when an EKS add-on does)."""
    tags: Mapping[str, str] = field(default_factory=dict)


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def trust_statement(
    oidc_provider_arn: pulumi.Input[str], issuer: str, namespace: str, accounts: Sequence[str]
) -> dict[str, object]:
    """Only `system:serviceaccount:<ns>:<sa>` for these accounts, audience sts.amazonaws.com,
    may assume the role."""
    subjects = [f"system:serviceaccount:{namespace}:{sa}" for sa in accounts]
    exact = [s for s in subjects if "*" not in s]
    patterns = [s for s in subjects if "*" in s]
    equals: dict[str, object] = {f"{issuer}:aud": "sts.amazonaws.com"}
    if exact:
        equals[f"{issuer}:sub"] = _one_or_list(exact)
    condition: dict[str, object] = {"StringEquals": equals}
    if patterns:
        condition["StringLike"] = {f"{issuer}:sub": _one_or_list(patterns)}
    return {
        "Effect": "Allow",
        "Principal": {"Federated": oidc_provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }


class IrsaRole(pulumi.ComponentResource):
    """IAM role + inline/managed policies + (optionally) the annotated ServiceAccount."""

    role_arn: pulumi.Output[str]
    """The role's ARN (the ServiceAccount's eks.amazonaws.com/role-arn)."""
    service_accounts: tuple[str, ...]
    """The Kubernetes ServiceAccounts bound to the role."""

    def __init__(
        self, name: str, args: IrsaRoleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:aws:IrsaRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain or None)
        issuer = args.oidc_issuer.removeprefix("https://")
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=policy_json(
                trust_statement(
                    args.oidc_provider_arn, issuer, args.namespace, args.service_accounts
                )
            ),
            description=(
                f"IRSA for {', '.join(args.service_accounts)} in namespace {args.namespace}"
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
        if args.create_service_accounts:
            for account in args.service_accounts:
                k8s.core.v1.ServiceAccount(
                    f"{name}-sa-{account}",
                    metadata={
                        "name": account,
                        "namespace": args.namespace,
                        "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                        "labels": dict(MANAGED_LABELS),
                    },
                    # IRSA's web-identity token is projected by EKS regardless; this is only the
                    # Kubernetes API token, which only the head's autoscaler needs.
                    automount_service_account_token=account not in args.without_api_token,
                    opts=waiting_child(self, opts),
                )
        self.role_arn = role.arn
        self.service_accounts = tuple(args.service_accounts)
        self.register_outputs(
            {"role_arn": self.role_arn, "service_accounts": list(self.service_accounts)}
        )
