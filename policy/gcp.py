"""GCS and Filestore: uniform access, no public principals, versioning, soft delete, prod guards."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pulumi_policy import Policy, ReportViolation, ResourceValidationArgs, StackValidationArgs

from policy.common import (
    PROD,
    CannotCheck,
    as_list,
    linked,
    mode,
    of_type,
    path,
    resource_rule,
    stack_rule,
)

BUCKET = "gcp:storage/bucket:Bucket"
FILESTORE = "gcp:filestore/instance:Instance"
BUCKET_IAM_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
BUCKET_IAM_BINDING = "gcp:storage/bucketIAMBinding:BucketIAMBinding"
BUCKET_IAM_POLICY = "gcp:storage/bucketIAMPolicy:BucketIAMPolicy"
BUCKET_ACL = "gcp:storage/bucketAccessControl:BucketAccessControl"
OBJECT_ACL = "gcp:storage/defaultObjectAccessControl:DefaultObjectAccessControl"
BACKUP_PLAN = "gcp:backupdisasterrecovery/backupPlan:BackupPlan"
BACKUP_PLAN_ASSOCIATION = "gcp:backupdisasterrecovery/backupPlanAssociation:BackupPlanAssociation"
FILESTORE_RESOURCE_TYPE = "file.googleapis.com/Instance"
PUBLIC = ("allUsers", "allAuthenticatedUsers")


def _uniform(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.props.get("uniformBucketLevelAccess") is not True:
        report("uniformBucketLevelAccess is not true, so object ACLs still apply", None)


def _prevention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    value = args.props.get("publicAccessPrevention")
    if value != "enforced":
        report(f"publicAccessPrevention is {value!r}, not 'enforced'", None)


def _versioning(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if path(args.props, "versioning", "enabled") is not True:
        report("object versioning is not enabled", None)


def _soft_delete(args: ResourceValidationArgs, report: ReportViolation) -> None:
    seconds = path(args.props, "softDeletePolicy", "retentionDurationSeconds")
    # Absent means GCS's default (7 days); only an explicit 0 turns soft delete off.
    if seconds is not None and float(seconds) == 0:
        report("softDeletePolicy.retentionDurationSeconds is 0: soft delete is off", None)


def _members(args: ResourceValidationArgs) -> list[str]:
    props = args.props
    if args.resource_type == BUCKET_IAM_POLICY:
        data = props.get("policyData")
        try:
            doc = json.loads(data) if isinstance(data, str) else data
        except ValueError as e:
            raise CannotCheck(f"policyData is not valid JSON: {e}") from e
        bindings = as_list(doc.get("bindings")) if isinstance(doc, Mapping) else []
        return [
            str(m) for b in bindings if isinstance(b, Mapping) for m in as_list(b.get("members"))
        ]
    if args.resource_type in (BUCKET_ACL, OBJECT_ACL):
        return [str(props.get("entity"))]
    return [str(m) for m in [*as_list(props.get("member")), *as_list(props.get("members"))]]


def _no_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    public = sorted({m for m in _members(args) if m in PUBLIC})
    if public:
        report(f"grants bucket access to {', '.join(public)}", None)


def _force_destroy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if mode(args) == PROD and args.props.get("forceDestroy") is True:
        report("a prod bucket has forceDestroy, so `pulumi destroy` would delete its objects", None)


def _filestore(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if mode(args) == PROD and args.props.get("deletionProtectionEnabled") is not True:
        report("a prod Filestore instance lacks deletionProtectionEnabled", None)


def _filestore_backups(args: StackValidationArgs, report: ReportViolation) -> None:
    """Each prod Filestore instance is associated with a Backup and DR plan that has a
    scheduled rule with a retention (the GCP side of `efs-backups-prod`)."""
    if mode(args) != PROD:
        return
    plans = of_type(args.resources, BACKUP_PLAN)
    associations = [
        a
        for a in of_type(args.resources, BACKUP_PLAN_ASSOCIATION)
        if a.props.get("resourceType") == FILESTORE_RESOURCE_TYPE
    ]
    for fs in of_type(args.resources, FILESTORE):
        mine = [a for a in associations if linked(a, fs, "resource")]
        if not mine:
            report(f"prod Filestore instance {fs.name} has no backup plan association", fs.urn)
            continue
        scheduled = [
            p
            for p in plans
            if any(linked(a, p, "backupPlan") for a in mine)
            and any(
                path(rule, "standardSchedule", "recurrenceType")
                and (path(rule, "backupRetentionDays") or 0) > 0
                for rule in as_list(p.props.get("backupRules"))
            )
        ]
        if not scheduled:
            report(
                f"prod Filestore instance {fs.name} is associated with no backup plan that has "
                "a scheduled rule with a retention",
                fs.urn,
            )


POLICIES: list[Policy] = [
    resource_rule(
        "gcs-uniform-access",
        "GCS buckets use uniform bucket-level access.",
        "Set uniform_bucket_level_access=True on the gcp.storage.Bucket.",
        _uniform,
        types=[BUCKET],
    ),
    resource_rule(
        "gcs-public-access-prevention",
        "GCS buckets enforce public access prevention.",
        'Set public_access_prevention="enforced" on the gcp.storage.Bucket.',
        _prevention,
        types=[BUCKET],
    ),
    resource_rule(
        "gcs-versioning",
        "GCS buckets keep object versions.",
        "Set versioning={'enabled': True} on the gcp.storage.Bucket.",
        _versioning,
        types=[BUCKET],
    ),
    resource_rule(
        "gcs-soft-delete-kept",
        "GCS buckets keep soft delete on.",
        "Leave soft_delete_policy unset (7 days) or set retention_duration_seconds >= 604800.",
        _soft_delete,
        types=[BUCKET],
    ),
    resource_rule(
        "gcs-no-public-members",
        "No GCS IAM binding or ACL grants allUsers or allAuthenticatedUsers.",
        "Grant bucket roles to the workload's Google service account or principal only.",
        _no_public,
        types=[BUCKET_IAM_MEMBER, BUCKET_IAM_BINDING, BUCKET_IAM_POLICY, BUCKET_ACL, OBJECT_ACL],
    ),
    resource_rule(
        "gcs-no-force-destroy-prod",
        "Prod GCS buckets do not set forceDestroy.",
        "Set force_destroy=False on prod buckets.",
        _force_destroy,
        types=[BUCKET],
        moded=True,
    ),
    resource_rule(
        "filestore-deletion-protection-prod",
        "Prod Filestore instances have deletion protection on.",
        "Set deletion_protection_enabled=True on the gcp.filestore.Instance.",
        _filestore,
        types=[FILESTORE],
        moded=True,
    ),
    stack_rule(
        "filestore-backups-prod",
        "Prod Filestore instances have scheduled backups (a Backup and DR plan with retention).",
        "Associate the gcp.filestore.Instance with a gcp.backupdisasterrecovery.BackupPlan "
        "(resourceType file.googleapis.com/Instance) that has a scheduled rule.",
        _filestore_backups,
        moded=True,
    ),
]
