"""EKS's artifact bucket: an S3 bucket for the stack's prefix, and the least-privilege policy on
that prefix the identity (`identity.py`) carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.policy import policy_json
from components.aws.s3_bucket import S3Bucket, S3BucketArgs
from components.wiring import WORKING_DIRS
from infra.clouds.adapter import WiringPart, with_provider
from infra.settings import Settings


def bucket_access_statements(
    bucket_arn: pulumi.Input[str], prefix: str, kms_key_arn: pulumi.Input[str] | None
) -> list[dict[str, object]]:
    """Least privilege on the stack's prefix: list under it, read/write objects in it, no `*`."""
    statements: list[dict[str, object]] = [
        {
            "Sid": "ListStackPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            # The bare prefix too: `aws s3 ls s3://bucket/ray/dev` lists with prefix=ray/dev.
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/", f"{prefix}/*"]}},
        },
        {
            "Sid": "ObjectsUnderStackPrefix",
            "Effect": "Allow",
            "Action": [
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject",
            ],
            "Resource": pulumi.Output.from_input(bucket_arn).apply(lambda arn: f"{arn}/{prefix}/*"),
        },
    ]
    if kms_key_arn is not None:
        statements.append(
            {
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            }
        )
    return statements


@dataclass(frozen=True)
class ArtifactBucket:
    policy: pulumi.Output[str]
    """What the identity Ray runs as may do with the bucket (its stack prefix only)."""
    part: WiringPart


def artifact_bucket(
    settings: Settings, *, tags: Mapping[str, str], provider: aws.Provider
) -> ArtifactBucket:
    """The bucket; Ray gets `s3://<bucket>/<prefix>`, its identity the policy on that prefix."""
    storage, stateful, prefix = settings.storage, settings.stateful, settings.bucket_prefix
    bucket = S3Bucket(
        "artifacts",
        S3BucketArgs(
            kms=stateful.customer_managed_keys,
            force_destroy=stateful.force_destroy,
            protect=stateful.protect,
            noncurrent_version_days=storage.artifact_bucket.noncurrent_version_days,
            expiring_prefixes={
                f"{prefix}/{WORKING_DIRS}/": storage.artifact_bucket.working_dir_expiry_days
            },
            tags=tags,
        ),
        opts=with_provider(provider),
    )
    uri = bucket.bucket_name.apply(lambda name: f"s3://{name}/{prefix}")
    return ArtifactBucket(
        policy_json(*bucket_access_statements(bucket.bucket_arn, prefix, bucket.kms_key_arn)),
        WiringPart(wiring={"bucket_uri": uri}, outputs={"bucketUri": uri}),
    )
