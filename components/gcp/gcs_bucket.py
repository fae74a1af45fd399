"""GcsBucket: the GCS bucket for Ray artifacts and working_dir zips."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.gcp.kms import SECONDS_PER_DAY, agent_key


@dataclass(frozen=True)
class GcsBucketArgs:
    """Inputs of a GcsBucket."""

    project: str
    location: str
    """A region (the cluster's): the key ring, when there is one, lives there too."""
    noncurrent_version_days: int = 30
    expiring_prefixes: Mapping[str, int] = field(default_factory=dict)
    """Key prefix → days after which its live objects are deleted (working-directory zips;
    versioning keeps them noncurrent for noncurrent_version_days more)."""
    soft_delete_days: int = 7
    abort_multipart_days: int = 7
    service_agent: str | None = None
    """The project's GCS service agent (e-mail). Given: the bucket is encrypted with its own
    rotating customer-managed key, which the agent may use (prod)."""
    force_destroy: bool = False
    """Let `pulumi destroy` empty the bucket. Dev only; prod never."""
    protect: bool = False
    """Protect the bucket, its key and the key's grant, and keep them on delete (prod)."""
    labels: Mapping[str, str] = field(default_factory=dict)


class GcsBucket(pulumi.ComponentResource):
    """Uniform access, public access prevention enforced, versioned, soft delete kept."""

    bucket_name: pulumi.Output[str]
    """Name of the bucket, for `gs://` URIs and IAM members."""
    kms_key_id: pulumi.Output[str] | None
    """The bucket's default key, when there is one."""

    def __init__(
        self, name: str, args: GcsBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:gcp:GcsBucket", name, None, opts)
        stateful = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        labels = dict(args.labels)

        encryption: Any = None
        bucket_opts = stateful
        key: gcp.kms.CryptoKey | None = None
        if args.service_agent is not None:
            # GCS encrypts with the key as its service agent (components/gcp/kms.py).
            key, bucket_opts = agent_key(
                name,
                project=args.project,
                location=args.location,
                labels=labels,
                service_agent=args.service_agent,
                grant_suffix="gcs-agent",
                opts=stateful,
            )
            encryption = {"default_kms_key_name": key.id}

        bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            project=args.project,
            location=args.location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": True},
            soft_delete_policy={
                "retention_duration_seconds": args.soft_delete_days * SECONDS_PER_DAY
            },
            lifecycle_rules=[
                {
                    "action": {"type": "Delete"},
                    "condition": {
                        "days_since_noncurrent_time": args.noncurrent_version_days,
                        "with_state": "ARCHIVED",
                    },
                },
                {
                    "action": {"type": "AbortIncompleteMultipartUpload"},
                    "condition": {"age": args.abort_multipart_days},
                },
                *(
                    {
                        "action": {"type": "Delete"},
                        "condition": {
                            "age": days,
                            "matches_prefixes": [prefix],
                            "with_state": "LIVE",
                        },
                    }
                    for prefix, days in sorted(args.expiring_prefixes.items())
                ),
            ],
            encryption=encryption,
            force_destroy=args.force_destroy,
            labels=labels,
            opts=bucket_opts,
        )
        self.bucket_name = bucket.name
        self.kms_key_id = key.id if key else None
        self.register_outputs({"bucket_name": self.bucket_name, "kms_key_id": self.kms_key_id})
