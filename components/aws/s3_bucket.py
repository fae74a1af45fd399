"""S3Bucket: the S3 bucket for Ray artifacts and working_dir zips."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.policy import deny_insecure_transport, policy_json


@dataclass(frozen=True)
class S3BucketArgs:
    """Inputs of an S3Bucket."""

    kms: bool = False
    """SSE-KMS with a dedicated, rotating customer-managed key (prod); else SSE-S3."""
    force_destroy: bool = False
    """Let `pulumi destroy` empty the bucket. Dev only; prod never."""
    protect: bool = False
    """Protect the bucket, its key and its guards, and keep them on delete (prod)."""
    abort_multipart_days: int = 7
    noncurrent_version_days: int = 30
    """Overwritten and deleted object versions are kept this long, then expire."""
    expiring_prefixes: Mapping[str, int] = field(default_factory=dict)
    """Key prefix → days after which its objects expire (working-directory zips)."""
    tags: Mapping[str, str] = field(default_factory=dict)


def _expiry_rules(prefixes: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per prefix: current objects expire after its days (versioning turns them into noncurrent
    versions, which expire-noncurrent-versions then removes), and the delete markers left with
    no version behind them go too."""
    rules: list[dict[str, Any]] = []
    for i, (prefix, days) in enumerate(sorted(prefixes.items())):
        rules.append(
            {
                "id": f"expire-prefix-{i}",
                "status": "Enabled",
                "filter": {"prefix": prefix},
                "expiration": {"days": days},
            }
        )
        rules.append(
            {
                "id": f"expire-prefix-{i}-markers",
                "status": "Enabled",
                "filter": {"prefix": prefix},
                "expiration": {"expired_object_delete_marker": True},
            }
        )
    return rules


class S3Bucket(pulumi.ComponentResource):
    """Private (all four public-access blocks, no ACLs), encrypted, versioned, TLS-only bucket."""

    bucket_name: pulumi.Output[str]
    """Name of the bucket, for `s3://` URIs."""
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str] | None
    """The bucket's KMS key, when `kms` is on (readers need kms:Decrypt on it)."""

    def __init__(
        self, name: str, args: S3BucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        # The type token keeps the class's old name: it is part of every child's URN, so a new
        # token would replace the stack's bucket (or need an alias on every child).
        super().__init__("ray-platform:aws:ArtifactBucket", name, None, opts)
        stateful = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        tags = dict(args.tags)

        bucket = aws.s3.Bucket(
            f"{name}-bucket", force_destroy=args.force_destroy, tags=tags, opts=stateful
        )
        # What keeps a retained bucket private and encrypted is retained with it.
        guard = stateful
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=guard,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=guard,
        )
        key: aws.kms.Key | None = None
        if args.kms:
            key = aws.kms.Key(
                f"{name}-key",
                description=f"SSE-KMS for the {name} artifact bucket",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                tags=tags,
                opts=stateful,
            )
            default: Any = {
                "sse_algorithm": "aws:kms",
                "kms_master_key_id": key.arn,
            }
        else:
            default = {"sse_algorithm": "AES256"}
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": default,
                    "bucket_key_enabled": args.kms,
                }
            ],
            opts=guard,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=guard,
        )
        rules: list[Any] = [
            {
                "id": "abort-incomplete-multipart-uploads",
                "status": "Enabled",
                "filter": {},
                "abort_incomplete_multipart_upload": {
                    "days_after_initiation": args.abort_multipart_days
                },
            },
            {
                # Versioning keeps every overwrite; without this the bucket only grows.
                "id": "expire-noncurrent-versions",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days},
            },
        ]
        rules.extend(_expiry_rules(args.expiring_prefixes))
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id, rules=rules, opts=guard
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=policy_json(
                deny_insecure_transport(
                    [bucket.arn, bucket.arn.apply(lambda arn: f"{arn}/*")],
                    principal="*",
                    action="s3:*",
                )
            ),
            # A policy PUT races the public-access block on a new bucket.
            opts=pulumi.ResourceOptions.merge(guard, pulumi.ResourceOptions(depends_on=[block])),
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn if key else None
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "kms_key_arn": self.kms_key_arn,
            }
        )
