"""S3: public access blocked, encrypted, versioned, owner-enforced, TLS-only, no prod force_destroy.

Buckets are configured by companion resources (BucketPublicAccessBlock, ...) that name the bucket
by an output unknown at first preview, so companions are matched to buckets by dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policy.common import (
    PROD,
    as_list,
    linked,
    mode,
    of_type,
    path,
    policy_statements,
    resource_rule,
    stack_rule,
    tls_only,
)

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
SSE = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
VERSIONING = (
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketVersioningV2:BucketVersioningV2",
)
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")

Verdict = Callable[[PolicyResource], str | None]


def _per_bucket(
    args: StackValidationArgs,
    report: ReportViolation,
    types: tuple[str, ...],
    what: str,
    verdict: Verdict,
    inline: Callable[[Mapping[str, Any]], bool] | None = None,
) -> None:
    """For every bucket: a companion of `types` must exist and `verdict` must find no fault."""
    companions = of_type(args.resources, *types)
    for bucket in of_type(args.resources, *BUCKETS):
        mine = [c for c in companions if linked(c, bucket, "bucket")]
        if not mine:
            if inline is None or not inline(bucket.props):
                report(f"bucket {bucket.name} has no {what}", bucket.urn)
            continue
        for c in mine:
            fault = verdict(c)
            if fault:
                report(f"bucket {bucket.name}: {fault}", c.urn)


def _pab_fault(c: PolicyResource) -> str | None:
    off = [f for f in PAB_FLAGS if c.props.get(f) is not True]
    return f"public access block leaves {', '.join(off)} off" if off else None


def _public_access(args: StackValidationArgs, report: ReportViolation) -> None:
    _per_bucket(args, report, (PUBLIC_ACCESS_BLOCK,), "public access block", _pab_fault)


def _sse_rules(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in as_list(props.get("rules")) if isinstance(r, Mapping)]


def _sse_fault(c: PolicyResource) -> str | None:
    algs = [
        path(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") for r in _sse_rules(c.props)
    ]
    if not any(a in SSE_ALGORITHMS for a in algs):
        return f"default encryption algorithm {algs or 'none'} is not one of {SSE_ALGORITHMS}"
    return None


def _inline_sse(props: Mapping[str, Any]) -> bool:
    rule = path(props, "serverSideEncryptionConfiguration", "rule")
    alg = path(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") if rule else None
    return alg in SSE_ALGORITHMS


def _encrypted(args: StackValidationArgs, report: ReportViolation) -> None:
    _per_bucket(args, report, SSE, "default server-side encryption", _sse_fault, _inline_sse)


def _sse_kms_prod(args: StackValidationArgs, report: ReportViolation) -> None:
    if mode(args) != PROD:
        return

    def fault(c: PolicyResource) -> str | None:
        for r in _sse_rules(c.props):
            if path(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") == "aws:kms":
                if not path(r, "applyServerSideEncryptionByDefault", "kmsMasterKeyId"):
                    return "SSE-KMS names no customer-managed key (kmsMasterKeyId)"
                return None
        return "prod encryption is not SSE-KMS"

    _per_bucket(args, report, SSE, "default server-side encryption", fault)


def _versioning_fault(c: PolicyResource) -> str | None:
    status = path(c.props, "versioningConfiguration", "status")
    return None if status == "Enabled" else f"versioning status is {status!r}, not 'Enabled'"


def _inline_versioning(props: Mapping[str, Any]) -> bool:
    return path(props, "versioning", "enabled") is True


def _versioned(args: StackValidationArgs, report: ReportViolation) -> None:
    _per_bucket(args, report, VERSIONING, "versioning", _versioning_fault, _inline_versioning)


def _ownership_fault(c: PolicyResource) -> str | None:
    owner = path(c.props, "rule", "objectOwnership")
    return None if owner == "BucketOwnerEnforced" else f"object ownership is {owner!r}"


def _ownership(args: StackValidationArgs, report: ReportViolation) -> None:
    _per_bucket(args, report, (OWNERSHIP,), "ownership controls", _ownership_fault)


def _tls_fault(c: PolicyResource) -> str | None:
    if tls_only(policy_statements(c.props.get("policy"), f"{c.name} policy")):
        return None
    return "bucket policy does not deny aws:SecureTransport = false"


def _tls(args: StackValidationArgs, report: ReportViolation) -> None:
    _per_bucket(args, report, (BUCKET_POLICY,), "TLS-only bucket policy", _tls_fault)


def _force_destroy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if mode(args) == PROD and args.props.get("forceDestroy") is True:
        report("a prod bucket has forceDestroy, so `pulumi destroy` would delete its objects", None)


POLICIES: list[Policy] = [
    stack_rule(
        "s3-public-access-blocked",
        "Every S3 bucket has all four public-access blocks on.",
        "Add an aws.s3.BucketPublicAccessBlock with blockPublicAcls, blockPublicPolicy, "
        "ignorePublicAcls and restrictPublicBuckets all True.",
        _public_access,
    ),
    stack_rule(
        "s3-encrypted",
        "Every S3 bucket has default server-side encryption.",
        "Add an aws.s3.BucketServerSideEncryptionConfiguration (AES256 or aws:kms).",
        _encrypted,
    ),
    stack_rule(
        "s3-prod-sse-kms",
        "Prod S3 buckets encrypt with SSE-KMS under a named key.",
        "Use sseAlgorithm aws:kms with kmsMasterKeyId set to a rotating aws.kms.Key.",
        _sse_kms_prod,
        moded=True,
    ),
    stack_rule(
        "s3-versioning",
        "Every S3 bucket has versioning enabled.",
        "Add an aws.s3.BucketVersioning with versioningConfiguration.status Enabled.",
        _versioned,
    ),
    stack_rule(
        "s3-ownership-enforced",
        "Every S3 bucket enforces bucket-owner object ownership (ACLs disabled).",
        "Add an aws.s3.BucketOwnershipControls with rule.objectOwnership BucketOwnerEnforced.",
        _ownership,
    ),
    stack_rule(
        "s3-tls-only-policy",
        "Every S3 bucket has a policy that denies requests without TLS.",
        "Add an aws.s3.BucketPolicy with a Deny on aws:SecureTransport = false.",
        _tls,
    ),
    resource_rule(
        "s3-no-force-destroy-prod",
        "Prod S3 buckets do not set forceDestroy.",
        "Set force_destroy=False on prod buckets (delete objects deliberately, not on destroy).",
        _force_destroy,
        types=list(BUCKETS),
        moded=True,
    ),
]
