"""GKE's image registry (prod): the Artifact Registry Docker repository the pipeline pushes the
app image to, in the cluster's region, and, when the stack names the node service accounts,
their right to read it."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pulumi_gcp as gcp

import contract.outputs as out
from components.gcp.artifact_registry import (
    ArtifactRegistryRepository,
    ArtifactRegistryRepositoryArgs,
)
from infra.clouds.adapter import WiringPart, with_provider
from infra.clouds.gcp.lookup import GkeCluster
from infra.clouds.gcp.settings import GcpSettings, region_of
from infra.settings import Settings

_INVALID = re.compile(r"[^a-z0-9]+")
APP_IMAGE = "ray-app"
"""The image's name inside the repository."""


def repository_id(settings: Settings) -> str:
    """`<project>-<stack>` within Artifact Registry's rules (a letter first, lowercase letters,
    digits and '-', at most 63)."""
    name = _INVALID.sub("-", f"{settings.project}-{settings.stack}".lower()).strip("-")
    if not name[:1].isalpha():
        name = f"ray-{name}"
    return name[:63].rstrip("-")


def image_repository(
    settings: Settings,
    block: GcpSettings,
    cluster: GkeCluster,
    *,
    labels: Mapping[str, str],
    provider: gcp.Provider,
) -> WiringPart:
    """The repository; the stack exports the app image's name in it as `imageRepository`. Ray
    pods wait for it (and the nodes' reader grants) before they are created."""
    stateful, repo = settings.stateful, block.image_repository
    repository = ArtifactRegistryRepository(
        "app-image",
        ArtifactRegistryRepositoryArgs(
            project=block.project,
            location=region_of(cluster.location),
            repository_id=repository_id(settings),
            image=APP_IMAGE,
            untagged_expiry_days=repo.untagged_expiry_days,
            keep_recent=repo.keep_recent,
            customer_managed_key=stateful.customer_managed_keys,
            protect=stateful.protect,
            readers=repo.node_service_accounts,
            labels=labels,
        ),
        opts=with_provider(provider),
    )
    return WiringPart(
        dependencies=(repository,), outputs={out.IMAGE_REPOSITORY: repository.image_name}
    )
