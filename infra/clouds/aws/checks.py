"""The EKS checks: a pure function from the looked-up cluster and the settings to every problem.

No lookup and no Pulumi run here: the adapter looks the cluster up (and, for an alias as the EFS
key, what it names now, for the message), then hands the data in, so the tests feed it cluster
shapes. Each problem is one settings line; the adapter raises them together, like the settings
loader, so a cluster that lacks two things says both in one run.
"""

from __future__ import annotations

from infra.clouds.aws.lookup import EksCluster
from infra.clouds.aws.settings import AwsSettings
from infra.clouds.aws.shared_fs import is_alias, mount_subnets
from infra.settings import Settings
from infra.settings.errors import message


def eks_problems(
    cluster: EksCluster, settings: Settings, *, efs_key_alias_target: str | None = None
) -> list[str]:
    """Every way `cluster` cannot run these settings: identity first, then the shared file
    system. `efs_key_alias_target` is the key an alias setting names now (None: not looked up,
    or not resolvable)."""
    block = settings.cloud_settings
    if not isinstance(block, AwsSettings):
        raise TypeError(f"eks_problems got a {type(block).__name__} block")
    problems = []
    if cluster.oidc_provider_arn is None:
        problems.append(
            message(
                "aws.clusterName",
                cluster.name,
                f"has no IAM OIDC provider for {cluster.oidc_issuer}; IRSA needs one "
                f"(eksctl utils associate-iam-oidc-provider --cluster {cluster.name} --approve)",
            )
        )
    problems += _efs_key(block.efs.kms_key_arn, efs_key_alias_target)
    if settings.storage.shared_filesystem.enabled:
        problems += mount_subnets(cluster, block.efs.subnet_ids)[1]
    return problems


def _efs_key(key: str | None, alias_target: str | None) -> list[str]:
    """The EFS key as the setting names it: a key ARN, used as is.

    An EFS file system's key is fixed at creation (`kms_key_id` replaces the file system), and
    an alias is a pointer that a key rotation re-points. Resolving it on every run would let
    that rotation, outside these settings, plan a new (empty) file system; resolving it once and
    ignoring later changes would hide a deliberate change of the setting. So only a key ARN is
    taken: the file system's key changes only when this setting does (prod: refused by
    `protect`; dev: a reviewed replacement).
    """
    if key is None or not is_alias(key):
        return []
    alias = "alias/" + key.split(":alias/", 1)[1]
    now = (
        f"it names {alias_target} now"
        if alias_target
        else f"aws kms describe-key --key-id {alias} --query KeyMetadata.Arn"
    )
    return [
        message(
            "aws.efs.kmsKeyArn",
            key,
            "is an alias, which a key rotation can re-point, and a file system's key cannot "
            f"change without replacing it: set the key ARN instead ({now})",
        )
    ]
