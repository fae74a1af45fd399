"""The cluster checks as pure functions (infra/clouds/<cloud>/checks.py): cluster shapes in, every
problem out, with no Pulumi run and no lookup. The adapters raise the list as one SettingsError;
test_program_gcp/aws hold that path (one problem, nothing registered) under mocks."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from infra import kuberay_release
from infra.clouds import load_settings
from infra.clouds.adapter import raise_problems
from infra.clouds.aws.checks import eks_problems
from infra.clouds.aws.lookup import EksCluster, Subnet
from infra.clouds.gcp.checks import gke_problems
from infra.clouds.gcp.lookup import GkeCluster, LiveCrd
from infra.settings import Settings, SettingsError
from tools.testing.pulumi_mocks import flatten, stack_config

GCLOUD = "gcloud container clusters update ml-dev --location us-central1"


def no_shared_fs(c: dict[str, Any]) -> None:
    """The shared file system off, and what lives on it (JupyterLab, shared packages) too."""
    c.setdefault("ray-platform:storage", {})["sharedFilesystem"] = {"enabled": False}
    c["ray-platform:ray"]["jupyter"] = {"enabled": False}
    c["ray-platform:ray"].pop("sharedPackages", None)


def settings(stack: str, mutate: Callable[[dict[str, Any]], None] = lambda c: None) -> Settings:
    config = copy.deepcopy(stack_config(stack))
    mutate(config)
    return load_settings(flatten(config), project="ray-platform", stack=stack)


# --- GKE -----------------------------------------------------------------------------------------

GKE = GkeCluster(
    name="ml-dev",
    location="us-central1",
    project="ml-platform-dev",
    project_number="123456789012",
    endpoint="34.118.12.34",
    ca_certificate="",
    master_version="1.33.5-gke.1308000",
    node_versions=("1.33.5-gke.1308000",),
    network="projects/ml-platform-dev/global/networks/ml-vpc",
    node_locations=("us-central1-c", "us-central1-f"),
    autopilot=False,
    workload_pool="ml-platform-dev.svc.id.goog",
    gcs_fuse_driver=True,
    filestore_driver=True,
    ray_operator_addon=False,
)


def gke(**changes: Any) -> GkeCluster:
    return dataclasses.replace(GKE, **changes)


def _operator(install: str, auth: str = "token") -> Callable[[dict[str, Any]], None]:
    def mutate(c: dict[str, Any]) -> None:
        c.setdefault("ray-platform:operator", {})["install"] = install
        c["ray-platform:ray"]["auth"] = auth

    return mutate


def test_a_cluster_with_everything_has_no_problem() -> None:
    assert gke_problems(GKE, settings("gke-dev")) == []
    assert gke_problems(GKE, settings("gke-prod")) == []


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (
            gke(workload_pool=None),
            'ray-platform:gcp.clusterName ("ml-dev") has Workload Identity off, which Ray\'s '
            f"bucket access needs; turn it on: {GCLOUD} "
            "--workload-pool=ml-platform-dev.svc.id.goog",
        ),
        (
            gke(gcs_fuse_driver=False),
            "ray-platform:gcp.gcsFuse.enabled (true) needs the GCS FUSE CSI driver, which cluster "
            f"ml-dev does not run; enable it: {GCLOUD} --update-addons GcsFuseCsiDriver=ENABLED",
        ),
        (
            # The control plane is new enough, one node pool lags it.
            gke(node_versions=("1.33.5-gke.1308000", "1.28.15-gke.1480000")),
            "ray-platform:gcp.gcsFuse.enabled (true) needs GKE 1.29.3-gke.1093000 or later (the "
            "FUSE native sidecar, so KubeRay's wait-gcs-ready init container can mount the "
            "bucket); cluster ml-dev runs 1.28.15-gke.1480000 (control plane or a node pool)",
        ),
        (
            gke(ray_operator_addon=True),
            'ray-platform:operator.install ("helm") would install a second KubeRay: cluster '
            "ml-dev runs the GKE Ray operator add-on, which owns KubeRay and its CRDs; set "
            "operator.install: managed (a stack deployed before: first `pulumi state delete` "
            "its kuberay-crds resources so the switch does not delete the CRDs)",
        ),
    ],
    ids=["workload-identity-off", "no-fuse-driver", "old-node-pool", "ray-addon-under-helm"],
)
def test_each_gke_problem_is_one_settings_line(cluster: GkeCluster, expected: str) -> None:
    assert gke_problems(cluster, settings("gke-dev")) == [expected]


def test_fuse_off_needs_neither_the_driver_nor_a_new_gke() -> None:
    old_without_fuse = gke(gcs_fuse_driver=False, master_version="1.28.15-gke.1480000")
    off = settings("gke-dev", lambda c: c["ray-platform:gcp"].update(gcsFuse={"enabled": False}))
    assert gke_problems(old_without_fuse, off) == []


def test_filestore_zone_is_required_only_for_a_zonal_tier_on_a_regional_cluster() -> None:
    def no_zone(c: dict[str, Any]) -> None:
        del c["ray-platform:gcp"]["filestore"]["zone"]

    assert gke_problems(GKE, settings("gke-dev", no_zone)) == [
        "ray-platform:gcp.filestore.zone (null) is required for the BASIC_HDD tier on regional "
        "cluster ml-dev: name the instance's zone (the cluster's node zones: us-central1-c, "
        "us-central1-f); it is used as is, and changing it replaces the instance"
    ]
    assert gke_problems(gke(location="us-central1-f"), settings("gke-dev", no_zone)) == []

    def neither(c: dict[str, Any]) -> None:
        no_zone(c)
        no_shared_fs(c)

    assert gke_problems(GKE, settings("gke-dev", neither)) == []


def test_managed_operator_needs_the_addon_and_a_crd_serving_what_ray_sets() -> None:
    managed = settings("gke-dev", _operator("managed"))
    (problem,) = gke_problems(GKE, managed)
    assert problem.startswith('ray-platform:operator.install ("managed") needs the GKE Ray ')
    assert problem.endswith(f"{GCLOUD} --update-addons RayOperator=ENABLED")
    addon = gke(ray_operator_addon=True)
    current = LiveCrd(crd=kuberay_release.crd("1.6.1"))
    assert gke_problems(addon, managed, current) == []
    (old,) = gke_problems(addon, managed, LiveCrd(crd=kuberay_release.crd("1.5.1")))
    assert "RayCluster CRD lacks spec.upgradeStrategy.type (" in old
    (unread,) = gke_problems(addon, managed, LiveCrd(error="HTTP 403 Forbidden"))
    assert unread == (
        'ray-platform:operator.install ("managed") needs the RayCluster CRD of cluster '
        "ml-dev's Ray add-on, which could not be read: HTTP 403 Forbidden"
    )


def test_every_gke_problem_is_reported_at_once() -> None:
    """A cluster lacking several things says all of them in one run, in one error, each problem
    the line it would be alone."""
    cluster = gke(
        workload_pool=None,
        gcs_fuse_driver=False,
        master_version="1.28.15-gke.1480000",
        ray_operator_addon=True,
    )
    problems = gke_problems(cluster, settings("gke-dev"))
    assert [p.split(" (")[0] for p in problems] == [
        "ray-platform:gcp.clusterName",
        "ray-platform:operator.install",
        "ray-platform:gcp.gcsFuse.enabled",
        "ray-platform:gcp.gcsFuse.enabled",
    ]
    with pytest.raises(SettingsError) as info:
        raise_problems(problems)
    assert str(info.value) == "; ".join(problems)
    assert "\n" not in str(info.value)


# --- EKS -----------------------------------------------------------------------------------------

EKS = EksCluster(
    name="ml-dev",
    arn="arn:aws:eks:us-west-2:123456789012:cluster/ml-dev",
    endpoint="https://example.eks.amazonaws.com",
    certificate_authority="",
    vpc_id="vpc-0abc",
    vpc_cidrs=("10.0.0.0/16",),
    cluster_security_group_id="sg-0cluster000000001",
    subnets=(
        Subnet("subnet-0a000001", "us-west-2a", False, {"kubernetes.io/role/internal-elb": "1"}),
        Subnet("subnet-0a000002", "us-west-2a", False, {}),
        Subnet("subnet-0b000003", "us-west-2b", False, {}),
    ),
    oidc_issuer="oidc.eks.us-west-2.amazonaws.com/id/ABC",
    oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC",
    partition="aws",
)


def _efs(**efs: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: c["ray-platform:aws"].update(efs=efs)


def test_an_eks_cluster_with_everything_has_no_problem() -> None:
    assert eks_problems(EKS, settings("dev")) == []
    assert eks_problems(EKS, settings("prod")) == []


def test_each_eks_problem_is_one_settings_line() -> None:
    assert eks_problems(dataclasses.replace(EKS, oidc_provider_arn=None), settings("dev")) == [
        'ray-platform:aws.clusterName ("ml-dev") has no IAM OIDC provider for '
        "oidc.eks.us-west-2.amazonaws.com/id/ABC; IRSA needs one (eksctl utils "
        "associate-iam-oidc-provider --cluster ml-dev --approve)"
    ]
    assert eks_problems(dataclasses.replace(EKS, subnets=()), settings("dev")) == [
        'ray-platform:aws.clusterName ("ml-dev") has no subnets for EFS mount targets'
    ]
    alias = "arn:aws:kms:us-west-2:123456789012:alias/ray-efs"
    key = "arn:aws:kms:us-west-2:123456789012:key/5c1d"
    (problem,) = eks_problems(EKS, settings("dev", _efs(kmsKeyArn=alias)), efs_key_alias_target=key)
    assert problem.endswith(f"set the key ARN instead (it names {key} now)")


def test_no_shared_file_system_needs_no_mount_subnets() -> None:
    assert eks_problems(dataclasses.replace(EKS, subnets=()), settings("dev", no_shared_fs)) == []


def test_every_eks_problem_is_reported_at_once() -> None:
    """Every named subnet at fault is named, each zone with two subnets once, beside the
    cluster's missing OIDC provider."""
    named = ["subnet-0other001", "subnet-0a000001", "subnet-0a000002", "subnet-0other002"]
    problems = eks_problems(
        dataclasses.replace(EKS, oidc_provider_arn=None), settings("dev", _efs(subnetIds=named))
    )
    assert [p.split(") ", 1)[1] for p in problems] == [
        "has no IAM OIDC provider for oidc.eks.us-west-2.amazonaws.com/id/ABC; IRSA needs one "
        "(eksctl utils associate-iam-oidc-provider --cluster ml-dev --approve)",
        "has subnet-0other001, not a subnet of the cluster's VPC vpc-0abc",
        "has two subnets in us-west-2a; EFS allows one mount target per zone",
        "has subnet-0other002, not a subnet of the cluster's VPC vpc-0abc",
    ]
