"""EcrRepository: the ECR repository the app image is pushed to and the EKS nodes pull from."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.policy import policy_json

PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)
"""What a kubelet needs to pull an image from one repository (AmazonEC2ContainerRegistryReadOnly
has them on every repository, with the token below)."""


def untagged_expiry(days: int) -> str:
    """The lifecycle policy: untagged images expire `days` after they were pushed; tagged ones
    are never touched."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Expire untagged images {days} days after push",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": days,
                    },
                    "action": {"type": "expire"},
                }
            ]
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class EcrRepositoryArgs:
    """Inputs of an EcrRepository."""

    name: str
    """The repository's name (its URL's path)."""
    untagged_expiry_days: int = 14
    """Untagged images expire this long after they were pushed."""
    kms: bool = False
    """Encrypt with a dedicated, rotating customer-managed key (prod); else with ECR's
    AWS-managed KMS key. ECR creates its own grants on the key: pulling needs no KMS right."""
    protect: bool = False
    """Protect the repository, its key and its lifecycle policy, and keep them on delete."""
    pull_role_names: Sequence[str] = ()
    """IAM roles (the EKS nodes') given an inline policy to pull from this repository only."""
    tags: Mapping[str, str] = field(default_factory=dict)


class EcrRepository(pulumi.ComponentResource):
    """Immutable tags, scan on push, KMS encryption, untagged images expired."""

    repository_url: pulumi.Output[str]
    """`ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME`: the image name without tag."""
    repository_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str] | None
    """The repository's key, when `kms` is on."""

    def __init__(
        self, name: str, args: EcrRepositoryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:aws:ImageRepository", name, None, opts)
        stateful = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        tags = dict(args.tags)

        key: aws.kms.Key | None = None
        encryption: Any = {"encryption_type": "KMS"}
        if args.kms:
            key = aws.kms.Key(
                f"{name}-key",
                description=f"Encryption of the {args.name} ECR repository",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                tags=tags,
                opts=stateful,
            )
            encryption["kms_key"] = key.arn
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=args.name,
            # A tag, once pushed, names one image for good: the pipeline pins prod by digest, and
            # no later push can move a tag a person reads.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            # Fixed at creation (a change replaces the repository, which `protect` refuses).
            encryption_configurations=[encryption],
            force_delete=False,
            tags=tags,
            opts=stateful,
        )
        # Kept with the repository: a retained repository without it would only grow.
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=untagged_expiry(args.untagged_expiry_days),
            opts=stateful,
        )
        for role in args.pull_role_names:
            aws.iam.RolePolicy(
                f"{name}-pull-{role}",
                role=role,
                # One inline policy per stack on a role this stack does not own: removing it
                # removes only this stack's grant (detaching a managed policy would take the
                # node's other pulls with it).
                name=f"{args.name}-pull",
                policy=policy_json(
                    {
                        "Sid": "EcrAuthorizationToken",
                        "Effect": "Allow",
                        "Action": "ecr:GetAuthorizationToken",
                        # The token is account-wide; ECR has no resource for it.
                        "Resource": "*",
                    },
                    {
                        "Sid": "PullThisRepository",
                        "Effect": "Allow",
                        "Action": list(PULL_ACTIONS),
                        "Resource": repository.arn,
                    },
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.kms_key_arn = key.arn if key else None
        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "repository_arn": self.repository_arn,
                "kms_key_arn": self.kms_key_arn,
            }
        )
