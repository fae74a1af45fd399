"""The app image's registry (prod): ECR on AWS, Artifact Registry on GCP, a named repository on
the local node; the outputs `imageRepository` and `baseImage` the image build reads."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

import contract.outputs as out
from infra.clouds import load_settings
from infra.settings import SettingsError
from infra.settings.errors import fmt_value
from tools.testing.pulumi_mocks import (
    ProgramRun,
    Registration,
    cached_run,
    flatten,
    run_program,
)
from tools.testing.pulumi_mocks import stack_config as file_config
from tools.testing.pulumi_mocks.aws import ACCOUNT
from tools.testing.pulumi_mocks.gcp import PROJECT_NUMBERS

ECR = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
AR = "gcp:artifactregistry/repository:Repository"
AR_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
RAYCLUSTER = "kubernetes:ray.io/v1:RayCluster"
DIGEST = "@sha256:" + "cd" * 32
Mutation = Callable[[dict[str, Any]], None]


def _config(stack: str, mutate: Mutation) -> dict[str, Any]:
    config = copy.deepcopy(file_config(stack))
    mutate(config)
    return config


def _block(config: dict[str, Any], cloud: str) -> dict[str, Any]:
    return config.setdefault(f"ray-platform:{cloud}", {})  # type: ignore[no-any-return]


def _children(run: ProgramRun, token: str) -> list[Registration]:
    return [r for r in run.registrations if token in r.urn.split("::")[2].split("$")[:-1]]


def _load(stack: str, mutate: Mutation) -> Any:
    config = _config(stack, mutate)
    return load_settings(flatten(config), project="ray-platform", stack=stack)


# --- AWS: ECR ----------------------------------------------------------------------------------


def test_prod_has_an_immutable_scanned_kms_encrypted_ecr_repository() -> None:
    prod = cached_run("prod")
    repo = prod.one(ECR)
    assert repo.inputs["name"] == "ray-platform-prod"
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["forceDelete"] is False
    key = prod.one("aws:kms/key:Key", "app-image-key")
    assert key.inputs["enableKeyRotation"] is True
    key_arn = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key_arn}]
    # The repository, its key and its lifecycle policy are kept like the bucket.
    for reg in (repo, key, prod.one(ECR_LIFECYCLE)):
        assert reg.protect and reg.retain_on_delete, reg.name


def test_untagged_images_expire_after_the_days_set() -> None:
    (rule,) = json.loads(cached_run("prod").one(ECR_LIFECYCLE).inputs["policy"])["rules"]
    assert rule["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 14,
    }
    assert rule["action"] == {"type": "expire"}
    run = run_program(
        "prod",
        _config(
            "prod", lambda c: _block(c, "aws").update(imageRepository={"untaggedExpiryDays": 3})
        ),
    )
    (rule,) = json.loads(run.one(ECR_LIFECYCLE).inputs["policy"])["rules"]
    assert rule["selection"]["countNumber"] == 3


def test_the_repository_url_is_exported_and_ray_waits_for_the_repository() -> None:
    prod = cached_run("prod")
    url = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/ray-platform-prod"
    assert prod.outputs[out.IMAGE_REPOSITORY] == url
    assert prod.outputs[out.BASE_IMAGE] == file_config("prod")["ray-platform:ray"]["baseImage"]
    ray = prod.one(RAYCLUSTER)
    assert prod.one(ECR).urn in ray.dependencies


def test_without_node_roles_no_iam_is_touched() -> None:
    """The EKS node role usually has AmazonEC2ContainerRegistryReadOnly already (README); the
    stack only grants what a setting names."""
    prod = cached_run("prod")
    assert [r.name for r in prod.of_type(ROLE_POLICY)] == ["ray-irsa-policy"]


def test_named_node_roles_may_pull_from_this_repository_only() -> None:
    roles = ["ml-prod-nodes", "KarpenterNodeRole-ml-prod"]
    run = run_program(
        "prod",
        _config(
            "prod", lambda c: _block(c, "aws").update(imageRepository={"nodeRoleNames": roles})
        ),
    )
    grants = [r for r in run.of_type(ROLE_POLICY) if r.name.startswith("app-image-pull-")]
    assert sorted(g.inputs["role"] for g in grants) == sorted(roles)
    arn = f"arn:aws:ecr:us-west-2:{ACCOUNT}:repository/ray-platform-prod"
    for grant in grants:
        assert grant.inputs["name"] == "ray-platform-prod-pull"
        token, pull = json.loads(grant.inputs["policy"])["Statement"]
        assert token["Action"] == "ecr:GetAuthorizationToken" and token["Resource"] == "*"
        assert pull["Resource"] == arn
        assert set(pull["Action"]) == {
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        }
        # A grant, not state: it goes with the stack.
        assert not grant.protect and not grant.retain_on_delete


def test_dev_has_no_repository_and_no_output() -> None:
    for stack in ("dev", "gke-dev"):
        run = cached_run(stack)
        assert not run.of_type(ECR) and not run.of_type(AR), stack
        assert out.IMAGE_REPOSITORY not in run.outputs and out.BASE_IMAGE not in run.outputs


# --- GCP: Artifact Registry --------------------------------------------------------------------


def test_gke_prod_has_a_docker_repository_with_its_own_key_and_cleanup() -> None:
    run = cached_run("gke-prod")
    repo = run.one(AR)
    inputs = repo.inputs
    assert inputs["format"] == "DOCKER"
    assert inputs["repositoryId"] == "ray-platform-gke-prod"
    assert inputs["location"] == "us-central1" and inputs["project"] == "ml-platform-prod"
    assert inputs["dockerConfig"] == {"immutableTags": True}
    assert inputs["cleanupPolicyDryRun"] is False
    assert inputs["cleanupPolicies"] == [
        {
            "id": "delete-untagged",
            "action": "DELETE",
            "condition": {"tagState": "UNTAGGED", "olderThan": f"{14 * 86400}s"},
        },
        {"id": "keep-recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 10}},
    ]
    key = run.one("gcp:kms/cryptoKey:CryptoKey", "app-image-key")
    ring = run.one("gcp:kms/keyRing:KeyRing", "app-image-keyring")
    grant = run.one("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember", "app-image-key-ar-agent")
    assert ring.inputs["location"] == "us-central1"
    assert key.inputs["rotationPeriod"] == "7776000s"
    assert inputs["kmsKeyName"] == grant.inputs["cryptoKeyId"]
    assert inputs["kmsKeyName"].startswith(f"{key.inputs['keyRing']}/cryptoKeys/app-image-key-")
    number = PROJECT_NUMBERS["ml-platform-prod"]
    assert grant.inputs["member"] == (
        f"serviceAccount:service-{number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    )
    assert grant.urn in repo.dependencies
    for reg in (repo, key, ring, grant):
        assert reg.protect and reg.retain_on_delete, reg.name
    assert run.outputs[out.IMAGE_REPOSITORY] == (
        "us-central1-docker.pkg.dev/ml-platform-prod/ray-platform-gke-prod/ray-app"
    )
    assert repo.urn in run.one(RAYCLUSTER).dependencies
    assert not run.of_type(AR_MEMBER)


def test_named_node_service_accounts_read_this_repository_only() -> None:
    accounts = [
        "gke-nodes@ml-platform-prod.iam.gserviceaccount.com",
        "598765432109-compute@developer.gserviceaccount.com",
    ]
    settings = {"nodeServiceAccounts": accounts, "untaggedExpiryDays": 2, "keepRecent": 3}
    run = run_program(
        "gke-prod",
        _config("gke-prod", lambda c: _block(c, "gcp").update(imageRepository=settings)),
    )
    members = run.of_type(AR_MEMBER)
    assert sorted(m.inputs["member"] for m in members) == sorted(
        f"serviceAccount:{a}" for a in accounts
    )
    for member in members:
        assert member.inputs["role"] == "roles/artifactregistry.reader"
        assert member.inputs["repository"] == "ray-platform-gke-prod"
        assert member.inputs["location"] == "us-central1"
    policies = run.one(AR).inputs["cleanupPolicies"]
    assert policies[0]["condition"]["olderThan"] == f"{2 * 86400}s"
    assert policies[1]["mostRecentVersions"] == {"keepCount": 3}


# --- local: a named repository, no resource ----------------------------------------------------


def test_local_exports_the_repository_it_names_and_nothing_otherwise() -> None:
    assert out.IMAGE_REPOSITORY not in cached_run("local").outputs
    repository = "127.0.0.1:5000/ray-platform/ray-app"
    before = {r.urn for r in cached_run("local").registrations}
    run = run_program(
        "local", _config("local", lambda c: _block(c, "local").update(imageRepository=repository))
    )
    assert run.outputs[out.IMAGE_REPOSITORY] == repository
    assert {r.urn for r in run.registrations} == before


@pytest.mark.parametrize(
    "repository",
    [
        "127.0.0.1:5000/ray-platform/ray-app",
        "localhost/ray-app",
        "registry.internal:443/team/ray-app",
        "[::1]:5000/ray-app",
        "registry.example.com/a/b/c",
    ],
)
def test_local_image_repository_accepts_registry_paths(repository: str) -> None:
    def put(c: dict[str, Any]) -> None:
        _block(c, "local")["imageRepository"] = repository

    assert _load("local", put).cloud_settings.image_repository == repository


@pytest.mark.parametrize(
    ("repository", "problem"),
    [
        ("ray-app", "is not a registry host and repository path"),
        ("127.0.0.1:5000/", "is not a registry host and repository path"),
        ("registry/ray-app", "would be read as a Docker Hub namespace"),
        ("127.0.0.1:5000/ray-app:2.60.0", "without a tag or digest"),
        (f"127.0.0.1:5000/ray-app{DIGEST}", "without a tag or digest"),
        ("127.0.0.1:5000/Ray-App", "lowercase components"),
        ("127.0.0.1:99999/ray-app", "outside 1-65535"),
        ("http://127.0.0.1:5000/ray-app", "is not a registry host and repository path"),
    ],
)
def test_local_image_repository_refuses_what_is_not_one(repository: str, problem: str) -> None:
    def put(c: dict[str, Any]) -> None:
        _block(c, "local")["imageRepository"] = repository

    with pytest.raises(SettingsError) as info:
        _load("local", put)
    message = str(info.value)
    assert message.startswith(f"ray-platform:local.imageRepository ({fmt_value(repository)}) ")
    assert problem in message and "\n" not in message


# --- settings ----------------------------------------------------------------------------------


def _base(image: str) -> Mutation:
    return lambda c: c["ray-platform:ray"].__setitem__("baseImage", image)


@pytest.mark.parametrize(
    ("stack", "image", "problem"),
    [
        ("prod", "rayproject/ray:2.60.0-py311", "must be pinned by digest"),
        ("dev", "rayproject/ray:2.60.0-py311", "must be pinned by digest"),
        ("prod", f"rayproject/ray:2.51.0-py311{DIGEST}", "carries Ray 2.51.0 but ray.version"),
        ("prod", f"rayproject/ray{DIGEST}", "needs a tag carrying Ray 2.60.0"),
        ("prod", "rayproject/ray:latest", "is not pinned: never ':latest'"),
        ("prod", "Ray Project/ray:2.60.0", "is not a valid image reference"),
    ],
)
def test_a_bad_base_image_is_one_line_naming_the_key(stack: str, image: str, problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        _load(stack, _base(image))
    message = str(info.value)
    assert message.startswith(f"ray-platform:ray.baseImage ({fmt_value(image)}) ")
    assert problem in message and "\n" not in message


def test_a_pinned_base_image_of_the_clusters_ray_is_taken() -> None:
    image = f"ghcr.io/acme/ray-base:2.60.0-py311-cu124{DIGEST}"
    assert _load("prod", _base(image)).ray.base_image == image
    assert _load("dev", lambda c: None).ray.base_image is None


@pytest.mark.parametrize(
    ("stack", "cloud", "value", "problem"),
    [
        ("dev", "aws", {"untaggedExpiryDays": 7}, "is not used in mode dev"),
        ("gke-dev", "gcp", {"keepRecent": 5}, "is not used in mode dev"),
        ("prod", "aws", {"nodeRoleNames": ["arn:aws:iam::1:role/x"]}, "not an IAM role name"),
        ("prod", "aws", {"nodeRoleNames": ["a", "a"]}, "lists a role twice"),
        ("prod", "aws", {"untaggedExpiryDays": 0}, "greater than or equal to 1"),
        ("gke-prod", "gcp", {"nodeServiceAccounts": ["nodes"]}, "not a service account e-mail"),
        ("gke-prod", "gcp", {"keepRecent": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_image_repository_settings(
    stack: str, cloud: str, value: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SettingsError) as info:
        _load(stack, lambda c: _block(c, cloud).__setitem__("imageRepository", value))
    message = str(info.value)
    assert f"ray-platform:{cloud}.imageRepository" in message
    assert problem in message and "\n" not in message


def test_local_prod_as_tools_up_writes_it_exports_what_the_build_reads() -> None:
    """tools/up's working copy of Pulumi.local-prod.yaml (prod_image_overrides: the stand-in
    base by digest, the node registry's repository) passes these settings and exports both."""
    from tools.devcluster.stack import prod_image_overrides

    config = copy.deepcopy(file_config("local-prod"))
    base = f"127.0.0.1:5000/rayproject/ray:2.60.0-py311{DIGEST}"
    config.update(prod_image_overrides(config, base, "127.0.0.1:5000", None))
    run = run_program("local-prod", config)
    assert run.outputs[out.IMAGE_REPOSITORY] == "127.0.0.1:5000/ray-platform/app"
    assert run.outputs[out.BASE_IMAGE] == base
    assert not run.of_type(ECR) and not run.of_type(AR)
