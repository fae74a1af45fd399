"""Image registries: ECR repositories (immutable tags, scan on push, KMS, untagged images
expired) and Artifact Registry repositories (Docker, customer-managed key in prod, cleanup)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import Policy, ReportViolation, ResourceValidationArgs, StackValidationArgs

from policy.common import (
    PROD,
    as_list,
    json_document,
    linked,
    mode,
    of_type,
    path,
    resource_rule,
    stack_rule,
)

ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
AR_REPOSITORY = "gcp:artifactregistry/repository:Repository"
ECR_KMS_TYPES = ("KMS", "KMS_DSSE")


def _immutable(args: ResourceValidationArgs, report: ReportViolation) -> None:
    value = args.props.get("imageTagMutability")
    if value != "IMMUTABLE":
        report(f"imageTagMutability is {value!r}, not 'IMMUTABLE': a tag could be moved", None)


def _scan_on_push(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if path(args.props, "imageScanningConfiguration", "scanOnPush") is not True:
        report("imageScanningConfiguration.scanOnPush is not true", None)


def _ecr_kms(args: ResourceValidationArgs, report: ReportViolation) -> None:
    configs = [c for c in as_list(args.props.get("encryptionConfigurations")) if c]
    types = [path(c, "encryptionType") for c in configs if isinstance(c, Mapping)]
    if not any(t in ECR_KMS_TYPES for t in types):
        # Absent means AES256 (S3-managed keys), ECR's default.
        report(f"encryption type is {types or ['AES256']}, not KMS", None)


def _expires_untagged(policy: Any, what: str) -> bool:
    policy = json_document(policy, what, "lifecycle policy document")
    return any(
        isinstance(rule, Mapping)
        and path(rule, "selection", "tagStatus") == "untagged"
        and path(rule, "action", "type") == "expire"
        for rule in as_list(policy.get("rules"))
    )


def _ecr_lifecycle(args: StackValidationArgs, report: ReportViolation) -> None:
    policies = of_type(args.resources, ECR_LIFECYCLE)
    for repo in of_type(args.resources, ECR_REPOSITORY):
        mine = [p for p in policies if linked(p, repo, "repository")]
        if not mine:
            report(f"ECR repository {repo.name} has no lifecycle policy", repo.urn)
        elif not any(_expires_untagged(p.props.get("policy"), f"{p.name} policy") for p in mine):
            report(
                f"ECR repository {repo.name}: no lifecycle rule expires untagged images",
                mine[0].urn,
            )


def _docker(args: ResourceValidationArgs, report: ReportViolation) -> None:
    value = args.props.get("format")
    if value != "DOCKER":
        report(f"format is {value!r}, not 'DOCKER'", None)


def _ar_cmk_prod(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if mode(args) == PROD and not args.props.get("kmsKeyName"):
        report("a prod repository names no customer-managed key (kmsKeyName)", None)


def _deletes_untagged(policy: Mapping[str, Any]) -> bool:
    return (
        policy.get("action") == "DELETE"
        and path(policy, "condition", "tagState") == "UNTAGGED"
        and bool(path(policy, "condition", "olderThan"))
    )


def _ar_cleanup(args: ResourceValidationArgs, report: ReportViolation) -> None:
    policies = [p for p in as_list(args.props.get("cleanupPolicies")) if isinstance(p, Mapping)]
    if not any(_deletes_untagged(p) for p in policies):
        report("no cleanup policy deletes untagged versions older than a set age", None)
    elif args.props.get("cleanupPolicyDryRun") is True:
        report("cleanupPolicyDryRun is true: the cleanup policies delete nothing", None)


POLICIES: list[Policy] = [
    resource_rule(
        "ecr-immutable-tags",
        "ECR repositories have immutable tags.",
        'Set image_tag_mutability="IMMUTABLE" on the aws.ecr.Repository.',
        _immutable,
        types=[ECR_REPOSITORY],
    ),
    resource_rule(
        "ecr-scan-on-push",
        "ECR repositories scan images on push.",
        "Set image_scanning_configuration={'scan_on_push': True} on the aws.ecr.Repository.",
        _scan_on_push,
        types=[ECR_REPOSITORY],
    ),
    resource_rule(
        "ecr-kms-encrypted",
        "ECR repositories encrypt images with KMS.",
        "Set encryption_configurations=[{'encryption_type': 'KMS', 'kms_key': <key ARN>}] on "
        "the aws.ecr.Repository.",
        _ecr_kms,
        types=[ECR_REPOSITORY],
    ),
    stack_rule(
        "ecr-lifecycle-untagged",
        "Every ECR repository has a lifecycle policy that expires untagged images.",
        "Add an aws.ecr.LifecyclePolicy with a rule selecting tagStatus untagged and action "
        "expire.",
        _ecr_lifecycle,
    ),
    resource_rule(
        "artifact-registry-docker",
        "Artifact Registry repositories are Docker repositories.",
        'Set format="DOCKER" on the gcp.artifactregistry.Repository.',
        _docker,
        types=[AR_REPOSITORY],
    ),
    resource_rule(
        "artifact-registry-cmk-prod",
        "Prod Artifact Registry repositories encrypt with a customer-managed key.",
        "Set kms_key_name to a rotating gcp.kms.CryptoKey the Artifact Registry service agent "
        "may use.",
        _ar_cmk_prod,
        types=[AR_REPOSITORY],
        moded=True,
    ),
    resource_rule(
        "artifact-registry-cleanup",
        "Artifact Registry repositories delete untagged versions by cleanup policy.",
        "Add a cleanup policy with action DELETE, condition tag_state UNTAGGED and older_than, "
        "and leave cleanup_policy_dry_run false.",
        _ar_cleanup,
        types=[AR_REPOSITORY],
    ),
]
