"""EKS's image registry (prod): the ECR repository the pipeline pushes the app image to, and,
when the stack names the node roles, their right to pull from it."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pulumi_aws as aws

import contract.outputs as out
from components.aws.ecr_repository import EcrRepository, EcrRepositoryArgs
from infra.clouds.adapter import WiringPart, with_provider
from infra.clouds.aws.settings import AwsSettings
from infra.settings import Settings

_INVALID = re.compile(r"[^a-z0-9]+")


def repository_name(settings: Settings) -> str:
    """`<project>-<stack>` within ECR's rules (lowercase letters and digits joined by '-')."""
    name = _INVALID.sub("-", f"{settings.project}-{settings.stack}".lower()).strip("-")
    return name[:256].rstrip("-")


def image_repository(
    settings: Settings, block: AwsSettings, *, tags: Mapping[str, str], provider: aws.Provider
) -> WiringPart:
    """The repository; the stack exports its URL as `imageRepository`. Ray pods wait for it
    (and the nodes' pull grant) before they are created."""
    stateful, repo = settings.stateful, block.image_repository
    repository = EcrRepository(
        "app-image",
        EcrRepositoryArgs(
            name=repository_name(settings),
            untagged_expiry_days=repo.untagged_expiry_days,
            kms=stateful.customer_managed_keys,
            protect=stateful.protect,
            pull_role_names=repo.node_role_names,
            tags=tags,
        ),
        opts=with_provider(provider),
    )
    return WiringPart(
        dependencies=(repository,), outputs={out.IMAGE_REPOSITORY: repository.repository_url}
    )
