"""ArtifactRegistryRepository: the Docker repository the app image is pushed to and the GKE
nodes pull from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.gcp.kms import SECONDS_PER_DAY, agent_key

READER = "roles/artifactregistry.reader"


def cleanup_policies(untagged_expiry_days: int, keep_recent: int) -> list[dict[str, Any]]:
    """Untagged versions older than the days are deleted; the most recent versions are kept
    whatever else matches (Artifact Registry applies keep policies first)."""
    return [
        {
            "id": "delete-untagged",
            "action": "DELETE",
            "condition": {
                "tag_state": "UNTAGGED",
                "older_than": f"{untagged_expiry_days * SECONDS_PER_DAY}s",
            },
        },
        {
            "id": "keep-recent",
            "action": "KEEP",
            "most_recent_versions": {"keep_count": keep_recent},
        },
    ]


@dataclass(frozen=True)
class ArtifactRegistryRepositoryArgs:
    """Inputs of an ArtifactRegistryRepository."""

    project: str
    location: str
    """A region (the cluster's): the key ring, when there is one, lives there too."""
    repository_id: str
    image: str = "ray-app"
    """The image's name inside the repository."""
    untagged_expiry_days: int = 14
    keep_recent: int = 10
    customer_managed_key: bool = False
    """The repository encrypted with its own rotating customer-managed key, which the project's
    Artifact Registry service agent may use (prod)."""
    protect: bool = False
    """Protect the repository, its key and the key's grant, and keep them on delete (prod)."""
    readers: Sequence[str] = ()
    """Service account e-mails (the GKE nodes') granted roles/artifactregistry.reader on this
    repository."""
    labels: Mapping[str, str] = field(default_factory=dict)


class ArtifactRegistryRepository(pulumi.ComponentResource):
    """DOCKER format, immutable tags, cleanup policies, optional CMK, repository-level readers."""

    image_name: pulumi.Output[str]
    """`REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`: the image name without tag."""
    kms_key_id: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        args: ArtifactRegistryRepositoryArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ray-platform:gcp:ImageRepository", name, None, opts)
        stateful = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        labels = dict(args.labels)

        repository_opts = stateful
        key: gcp.kms.CryptoKey | None = None
        if args.customer_managed_key:
            # Artifact Registry encrypts as its service agent (components/gcp/kms.py). Google
            # makes that agent only with a project's first repository: in a project without one
            # a grant to its address fails ("service account does not exist"), so it is asked
            # for first (generate-service-identity; a no-op when it exists). A child here, so
            # the pipeline's targeted create of the repository includes it.
            agent = gcp.projects.ServiceIdentity(
                f"{name}-agent",
                project=args.project,
                service="artifactregistry.googleapis.com",
                opts=pulumi.ResourceOptions(parent=self),
            )
            key, repository_opts = agent_key(
                name,
                project=args.project,
                location=args.location,
                labels=labels,
                service_agent=agent.email,
                grant_suffix="ar-agent",
                opts=stateful,
            )
        repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=args.project,
            location=args.location,
            repository_id=args.repository_id,
            format="DOCKER",
            description="The app image, built on the stack's base image and pinned by digest",
            # Fixed at creation (a change replaces the repository, which `protect` refuses).
            kms_key_name=key.id if key else None,
            # A tag, once pushed, names one image for good.
            docker_config={"immutable_tags": True},
            cleanup_policies=cleanup_policies(args.untagged_expiry_days, args.keep_recent),
            cleanup_policy_dry_run=False,
            labels=labels,
            opts=repository_opts,
        )
        for email in args.readers:
            gcp.artifactregistry.RepositoryIamMember(
                f"{name}-reader-{email}",
                project=args.project,
                location=args.location,
                repository=repository.name,
                role=READER,
                member=f"serviceAccount:{email}",
                opts=pulumi.ResourceOptions(parent=self),
            )
        image = args.image
        self.image_name = repository.registry_uri.apply(lambda uri: f"{uri}/{image}")
        self.kms_key_id = key.id if key else None
        self.register_outputs({"image_name": self.image_name, "kms_key_id": self.kms_key_id})
