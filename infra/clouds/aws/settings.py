"""The `ray-platform:aws` block: the EKS cluster and the choices only AWS has."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from infra.settings.errors import message
from infra.settings.models import CloudSettings, Model, Settings
from infra.settings.values import Days

_EKS_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+$")
_SECURITY_GROUP = re.compile(r"sg-[0-9a-f]{8,17}")
_SUBNET = re.compile(r"subnet-[0-9a-z]{8,17}")
_ADDON_VERSION = re.compile(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")
# An IAM role's name (not its ARN): what an inline policy is attached to.
_ROLE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")


class EfsSettings(Model):
    """EFS-only choices for the shared file system."""

    kms_key_arn: str | None = Field(None, alias="kmsKeyArn")
    """A customer-managed KMS key for EFS encryption, as a key ARN (default: the AWS-managed
    key). Not an alias: the file system's key is fixed at creation, and an alias can be
    re-pointed outside these settings."""
    allowed_security_groups: tuple[str, ...] = Field((), alias="allowedSecurityGroups")
    """Narrows NFS (TCP 2049) to these security groups plus the cluster security group. Default:
    the VPC's CIDR blocks, because node groups with their own security groups, Karpenter and
    self-managed nodes do not carry the cluster security group (the file system's TLS policy
    and access point still guard it)."""
    subnet_ids: tuple[str, ...] = Field((), alias="subnetIds")
    """The mount-target subnets, one per zone. Default: one per zone of the cluster's VPC,
    private subnets preferred, so a node in any zone of the VPC can mount."""

    @field_validator("kms_key_arn")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None and not _KMS_ARN.match(v):
            raise ValueError("is not a KMS key or alias ARN")
        return v

    @field_validator("allowed_security_groups")
    @classmethod
    def _security_groups(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for sg in v:
            if not _SECURITY_GROUP.fullmatch(sg):
                raise ValueError(f"has {sg!r}, which is not a security group id (sg-…)")
        return v

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for subnet in v:
            if not _SUBNET.fullmatch(subnet):
                raise ValueError(f"has {subnet!r}, which is not a subnet id (subnet-…)")
        if len(set(v)) != len(v):
            raise ValueError("lists a subnet twice")
        return v


class ImageRepositorySettings(Model):
    """The ECR repository the app image is pushed to (prod only): immutable tags, scanned on
    push, encrypted with its own rotating KMS key, protected and retained."""

    untagged_expiry_days: Days = Field(14, alias="untaggedExpiryDays")
    """Untagged images (a push interrupted, layers of an image whose tag was never written) are
    expired this long after they were pushed. Tagged images are kept: tags are immutable and the
    pipeline always pushes with one, so an image a RayCluster runs by digest stays tagged."""
    node_role_names: tuple[str, ...] = Field((), alias="nodeRoleNames")
    """IAM role names of the EKS nodes (node groups, Karpenter) that pull the app image: each
    gets an inline policy allowing ecr:GetAuthorizationToken and pulls from this repository
    only. Empty: the nodes' roles must already allow it (EKS node roles usually carry
    AmazonEC2ContainerRegistryReadOnly, which covers every repository of the account)."""

    @field_validator("node_role_names")
    @classmethod
    def _roles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for role in v:
            if not _ROLE_NAME.fullmatch(role):
                raise ValueError(
                    f"has {role!r}, which is not an IAM role name (the name, not the ARN)"
                )
        if len(set(v)) != len(v):
            raise ValueError("lists a role twice")
        return v


class AwsSettings(CloudSettings):
    """`ray-platform:aws`; the region is the AWS provider's own `aws:region`."""

    PROVIDER_KEYS: ClassVar[dict[str, str]] = {"region": "aws:region"}

    cluster_name: str = Field(alias="clusterName")
    """The EKS cluster; its VPC, subnets, security group and OIDC issuer are looked up from it."""
    region: str
    """The cluster's AWS region: the explicit AWS provider's, and `aws eks get-token`'s."""
    efs_csi_driver: Literal["install", "preinstalled"] = Field("preinstalled", alias="efsCsiDriver")
    """install: the program adds the aws-efs-csi-driver EKS add-on (with its own IRSA role)."""
    efs_csi_driver_version: str | None = Field(None, alias="efsCsiDriverVersion")
    """The add-on version to pin (`aws eks describe-addon-versions --addon-name
    aws-efs-csi-driver`); required with `efsCsiDriver: install`, so an update is a reviewed
    change rather than whatever EKS picks."""
    efs: EfsSettings = Field(default_factory=lambda: EfsSettings.model_validate({}))
    image_repository: ImageRepositorySettings = Field(
        default_factory=lambda: ImageRepositorySettings.model_validate({}),
        alias="imageRepository",
    )
    """The app image's ECR repository, which prod stacks create (dev ones none)."""

    @field_validator("cluster_name")
    @classmethod
    def _cluster(cls, v: str) -> str:
        if not _EKS_NAME.match(v):
            raise ValueError("is not a cluster name (letters, digits, '-', '_'; at most 100)")
        return v

    @field_validator("efs_csi_driver_version")
    @classmethod
    def _addon_version(cls, v: str | None) -> str | None:
        if v is not None and not _ADDON_VERSION.match(v):
            raise ValueError("is not an EKS add-on version such as v2.1.4-eksbuild.1")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError("is not an AWS region such as us-west-2")
        return v

    def rules(self, settings: Settings) -> list[str]:
        problems = []
        if self.efs_csi_driver == "install" and self.efs_csi_driver_version is None:
            problems.append(
                message(
                    "aws.efsCsiDriver",
                    "install",
                    "needs aws.efsCsiDriverVersion (pin the add-on; list versions with "
                    "aws eks describe-addon-versions --addon-name aws-efs-csi-driver)",
                )
            )
        if "image_repository" in self.model_fields_set and not settings.stateful.image_repository:
            problems.append(
                message(
                    "aws.imageRepository",
                    self.image_repository.model_dump(by_alias=True, exclude_unset=True),
                    f"is not used in mode {settings.mode}: only prod stacks create an image "
                    "repository (dev runs the generic Ray image)",
                )
            )
        return problems
