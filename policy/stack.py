"""Stack level: every stateful prod resource is protected and retained on delete."""

from __future__ import annotations

from pulumi_policy import Policy, ReportViolation, StackValidationArgs

from policy.common import PROD, CannotCheck, mode, of_type, stack_rule

STATEFUL = (
    "aws:efs/fileSystem:FileSystem",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
    "aws:kms/key:Key",
    "gcp:storage/bucket:Bucket",
    "gcp:kms/cryptoKey:CryptoKey",
    "gcp:filestore/instance:Instance",
    "gcp:backupdisasterrecovery/backupVault:BackupVault",
    "aws:ecr/repository:Repository",
    "gcp:artifactregistry/repository:Repository",
)


def _protected(args: StackValidationArgs, report: ReportViolation) -> None:
    if mode(args) != PROD:
        return
    for r in of_type(args.resources, *STATEFUL):
        if not r.opts.protect:
            report(f"{r.resource_type} {r.name} is not protected", r.urn)


def _retained(args: StackValidationArgs, report: ReportViolation) -> None:
    if mode(args) != PROD:
        return
    unseen = []
    for r in of_type(args.resources, *STATEFUL):
        # The SDK's PolicyResourceOptions (and the engine's AnalyzerResourceOptions up to
        # v3.274.1) carry no retainOnDelete; read it when a newer SDK/engine sends it.
        retain = getattr(r.opts, "retain_on_delete", None)
        if retain is None:
            unseen.append(r.name)
        elif retain is not True:
            report(f"{r.resource_type} {r.name} is not retained on delete", r.urn)
    if unseen:
        raise CannotCheck(
            "the engine does not send retainOnDelete to policy packs; could not check "
            + ", ".join(unseen)
        )


POLICIES: list[Policy] = [
    stack_rule(
        "prod-stateful-protected",
        "Stateful prod resources (file systems, buckets, keys, Filestore, backup vaults, image "
        "repositories) are protected.",
        "Register them with ResourceOptions(protect=True) in prod.",
        _protected,
        moded=True,
    ),
    stack_rule(
        "prod-stateful-retained",
        "Stateful prod resources are retained on delete.",
        "Register them with ResourceOptions(retain_on_delete=True) in prod.",
        _retained,
        moded=True,
    ),
]
