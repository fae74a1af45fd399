"""IAM: no wildcard actions or S3 object resources, pinned IRSA trust, narrow GCP grants."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import Policy, ReportViolation, ResourceValidationArgs

from policy.common import CannotCheck, as_list, policy_statements, resource_rule

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
PERMISSION_TYPES = [ROLE, ROLE_POLICY, MANAGED_POLICY, USER_POLICY, GROUP_POLICY]
PROJECT_IAM = (
    "gcp:projects/iAMMember:IAMMember",
    "gcp:projects/iAMBinding:IAMBinding",
    "gcp:projects/iAMPolicy:IAMPolicy",
)
WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"


def _permission_statements(args: ResourceValidationArgs) -> Iterator[Mapping[str, Any]]:
    """Allow statements of the permission policies a resource carries (not trust policies)."""
    if args.resource_type == ROLE:
        docs = [p.get("policy") for p in as_list(args.props.get("inlinePolicies"))]
    else:
        docs = [args.props.get("policy")]
    for doc in docs:
        for s in policy_statements(doc, f"{args.name} policy"):
            if s.get("Effect") == "Allow":
                yield s


def _no_star_actions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for s in _permission_statements(args):
        # Any wildcard: `*`, `s3:*`, and partial ones such as `s3:Get*` or `iam:Pass*`.
        wild = [str(a) for a in as_list(s.get("Action")) if "*" in str(a) or "?" in str(a)]
        if wild:
            report(f"statement {s.get('Sid', '(no Sid)')} allows {', '.join(wild)}", None)
        if s.get("NotAction") is not None:
            report(f"statement {s.get('Sid', '(no Sid)')} allows everything but NotAction", None)


def _object_action(action: str) -> bool:
    a = action.lower()
    return a == "*" or (a.startswith("s3:") and ("object" in a or "*" in a))


def _all_objects(resource: str) -> bool:
    """`*`, `arn:aws:s3:::*`, `arn:aws:s3:::*/*`, `arn:aws:s3:::bucket*`: no bucket and prefix."""
    if resource == "*":
        return True
    if not resource.startswith("arn:aws") or ":s3:::" not in resource:
        return False
    bucket = resource.split(":s3:::", 1)[1].split("/", 1)[0]
    return "*" in bucket or "?" in bucket


def _no_star_object_resource(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for s in _permission_statements(args):
        if not any(_object_action(str(a)) for a in as_list(s.get("Action"))):
            continue
        wide = [str(r) for r in as_list(s.get("Resource")) if _all_objects(str(r))]
        if wide:
            report(
                f"statement {s.get('Sid', '(no Sid)')} allows S3 object actions on {wide[0]}", None
            )


def _confined_pattern(subject: str) -> bool:
    """`system:serviceaccount:NS:PREFIX*`: one named namespace, a named account prefix, the
    only wildcard at the end (AWS's own add-on guides trust e.g. kube-system:efs-csi-*)."""
    parts = subject.split(":")
    return (
        len(parts) == 4
        and parts[:2] == ["system", "serviceaccount"]
        and "*" not in parts[2]
        and parts[2] != ""
        and parts[3].endswith("*")
        and "*" not in parts[3][:-1]
        and len(parts[3]) > 1
    )


def _irsa_trust(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for s in policy_statements(args.props.get("assumeRolePolicy"), f"{args.name} trust policy"):
        actions = [str(a) for a in as_list(s.get("Action"))]
        if s.get("Effect") != "Allow" or WEB_IDENTITY not in actions:
            continue
        condition = s.get("Condition") or {}
        equals = condition.get("StringEquals") or {}
        like = condition.get("StringLike") or {}
        sub = [k for k in equals if str(k).endswith(":sub")]
        like_sub = [k for k in like if str(k).endswith(":sub")]
        aud = [k for k in equals if str(k).endswith(":aud")]
        if not sub and not like_sub:
            report("web-identity trust does not pin :sub with StringEquals", None)
        elif any("*" in str(v) for k in sub for v in as_list(equals[k])):
            report("web-identity trust :sub contains a wildcard", None)
        for k in like_sub:
            loose = [str(v) for v in as_list(like[k]) if not _confined_pattern(str(v))]
            if loose:
                report(
                    f"web-identity trust :sub pattern {loose[0]} is not confined to one "
                    "namespace and a named account prefix",
                    None,
                )
        if not aud:
            report("web-identity trust does not pin :aud with StringEquals", None)
        elif any(v != "sts.amazonaws.com" for k in aud for v in as_list(equals[k])):
            report("web-identity trust :aud is not sts.amazonaws.com", None)


def _project_roles(args: ResourceValidationArgs) -> list[str]:
    if args.resource_type == "gcp:projects/iAMPolicy:IAMPolicy":
        data = args.props.get("policyData")
        try:
            doc = json.loads(data) if isinstance(data, str) else data
        except ValueError as e:
            raise CannotCheck(f"policyData is not valid JSON: {e}") from e
        bindings = as_list(doc.get("bindings")) if isinstance(doc, Mapping) else []
        return [str(b.get("role")) for b in bindings if isinstance(b, Mapping)]
    return [str(args.props.get("role"))]


def _no_project_wi_user(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if "roles/iam.workloadIdentityUser" in _project_roles(args):
        report("grants roles/iam.workloadIdentityUser on the whole project", None)


def _no_project_storage(args: ResourceValidationArgs, report: ReportViolation) -> None:
    storage = [r for r in _project_roles(args) if r.startswith("roles/storage.")]
    if storage:
        report(f"grants {', '.join(storage)} on the whole project", None)


POLICIES: list[Policy] = [
    resource_rule(
        "iam-no-wildcard-actions",
        "IAM permission policies allow no '*' or 'service:*' actions.",
        "List the exact actions the workload needs (e.g. s3:GetObject, s3:PutObject).",
        _no_star_actions,
        types=PERMISSION_TYPES,
    ),
    resource_rule(
        "iam-no-wildcard-s3-object-resource",
        "S3 object actions are never allowed on Resource '*'.",
        "Scope object actions to arn:aws:s3:::BUCKET/PREFIX/*.",
        _no_star_object_resource,
        types=PERMISSION_TYPES,
    ),
    resource_rule(
        "iam-irsa-trust-pinned",
        "IRSA trust policies pin :aud (sts.amazonaws.com) and :sub with StringEquals "
        "(StringLike only as NS:PREFIX*).",
        "Use Condition.StringEquals with ISSUER:sub = system:serviceaccount:NS:SA and "
        "ISSUER:aud = sts.amazonaws.com.",
        _irsa_trust,
        types=[ROLE],
    ),
    resource_rule(
        "gcp-no-project-workload-identity-user",
        "roles/iam.workloadIdentityUser is never granted at project level.",
        "Grant it on the Google service account (gcp.serviceaccount.IAMMember) to one KSA.",
        _no_project_wi_user,
        types=list(PROJECT_IAM),
    ),
    resource_rule(
        "gcp-no-project-storage-roles",
        "Storage roles are never granted at project level.",
        "Grant storage roles on the bucket (gcp.storage.BucketIAMMember).",
        _no_project_storage,
        types=list(PROJECT_IAM),
    ),
]
