"""The real program for Pulumi.dev.yaml and Pulumi.prod.yaml under mocks (AWS + Kubernetes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc

from infra import kuberay_release
from infra.settings import SettingsError
from tools.testing.pulumi_mocks import (
    TEST_SECRETS,
    ProgramRun,
    RecordingMonitor,
    Registration,
    cached_run,
    run_program,
    stack_config,
)
from tools.testing.pulumi_mocks.aws import (
    CLUSTER_SG,
    ISSUER,
    SUBNETS,
    VPC_CIDRS,
    VPC_ONLY_SUBNETS,
    PlatformMocks,
)

STATEFUL = ("aws:efs/fileSystem:FileSystem", "aws:s3/bucket:Bucket")
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_KEPT = (ECR_REPOSITORY, "aws:ecr/lifecyclePolicy:LifecyclePolicy")


def _policy(reg: Registration) -> dict[str, Any]:
    return json.loads(reg.inputs["policy"])  # type: ignore[no-any-return]


def _raycluster(run: ProgramRun) -> dict[str, Any]:
    return run.one("kubernetes:ray.io/v1:RayCluster").inputs


def _pods(run: ProgramRun) -> list[dict[str, Any]]:
    spec = _raycluster(run)["spec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]


# --- lookups ---------------------------------------------------------------------------------


def test_cluster_facts_are_looked_up_from_the_cluster_name(aws_run: ProgramRun) -> None:
    tokens = [t for t, _ in aws_run.calls]
    lookups = [a for t, a in aws_run.calls if t == "aws:eks/getCluster:getCluster"]
    assert lookups == [{"name": _name(aws_run)}]
    assert "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider" in tokens
    # Every subnet of the VPC is looked at, not only the cluster's own.
    assert tokens.count("aws:ec2/getSubnet:getSubnet") == len(SUBNETS) + len(VPC_ONLY_SUBNETS)
    assert "aws:ec2/getVpc:getVpc" in tokens


def _name(run: ProgramRun) -> str:
    return "ml-dev" if run.outputs["mode"] == "dev" else "ml-prod"


# --- EFS ---------------------------------------------------------------------------------------


def test_efs_is_encrypted_elastic_regional(aws_run: ProgramRun) -> None:
    fs = aws_run.one("aws:efs/fileSystem:FileSystem").inputs
    assert fs["encrypted"] is True
    assert fs["throughputMode"] == "elastic"
    assert "availabilityZoneName" not in fs  # regional, not One Zone


def test_efs_customer_managed_key_option() -> None:
    config = copy.deepcopy(stack_config("dev"))
    arn = "arn:aws:kms:us-west-2:123456789012:key/0000aaaa-1111-2222-3333-444455556666"
    config["ray-platform:aws"]["efs"] = {"kmsKeyArn": arn}
    run = run_program("dev", config)
    assert run.one("aws:efs/fileSystem:FileSystem").inputs["kmsKeyId"] == arn


def test_one_mount_target_per_zone_of_the_vpc_in_private_subnets(aws_run: ProgramRun) -> None:
    targets = aws_run.of_type("aws:efs/mountTarget:MountTarget")
    subnets = sorted(t.inputs["subnetId"] for t in targets)
    # Tagged private subnets first; 2a has two (the first is used); public ones never when a
    # better one exists; 2d has only an untagged subnet, and still gets its target; 2e is a
    # subnet of the VPC the cluster was not created with (Karpenter nodes may run there).
    assert subnets == [
        "subnet-0karp2e0000000009",
        "subnet-0priv2a0000000001",
        "subnet-0priv2b0000000003",
        "subnet-0priv2c0000000004",
        "subnet-0untagged000000008",
    ]
    sg_id = "sg-0efs000000000001"
    assert all(t.inputs["securityGroups"] == [sg_id] for t in targets)


def test_nfs_from_every_node_of_the_vpc_by_default(aws_run: ProgramRun) -> None:
    """Node groups with their own security groups, Karpenter and self-managed nodes do not
    carry the cluster security group: NFS admitted only from it would time out there."""
    rules = aws_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert sorted(r.inputs["cidrIpv4"] for r in rules) == sorted(VPC_CIDRS)
    for rule in (r.inputs for r in rules):
        assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 2049, 2049)
        assert "referencedSecurityGroupId" not in rule
        assert rule["cidrIpv4"] != "0.0.0.0/0"
    sg = aws_run.one("aws:ec2/securityGroup:SecurityGroup").inputs
    assert "ingress" not in sg and "egress" not in sg


def test_efs_policy_denies_non_tls(aws_run: ProgramRun) -> None:
    statements = _policy(aws_run.one("aws:efs/fileSystemPolicy:FileSystemPolicy"))["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny" and s["Sid"] == "DenyNonTls"]
    assert deny == [
        {
            "Sid": "DenyNonTls",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "*",
            "Resource": deny[0]["Resource"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert all("ClientRootAccess" not in str(s["Action"]) for s in allow)
    assert all(
        s["Condition"] == {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}
        for s in allow
    )


def test_access_point_is_uid_1000_with_non_root_directory(aws_run: ProgramRun) -> None:
    ap = aws_run.one("aws:efs/accessPoint:AccessPoint").inputs
    # The Ray image's own user: uid 1000, gid 100 (`users`), the ids the pods run with.
    pod = _pods(aws_run)[0]["securityContext"]
    assert (
        ap["posixUser"]
        == {"uid": pod["runAsUser"], "gid": pod["runAsGroup"]}
        == {
            "uid": 1000,
            "gid": 100,
        }
    )
    root = ap["rootDirectory"]
    assert root["path"] not in ("/", "")
    assert root["creationInfo"] == {"ownerUid": 1000, "ownerGid": 100, "permissions": "0750"}


def test_backup_on_in_prod_only() -> None:
    for stack, status in (("dev", "DISABLED"), ("prod", "ENABLED")):
        backup = cached_run(stack).one("aws:efs/backupPolicy:BackupPolicy").inputs
        assert backup["backupPolicy"] == {"status": status}


def test_static_pv_and_pvc_for_efs(aws_run: ProgramRun) -> None:
    pv = aws_run.one("kubernetes:core/v1:PersistentVolume")
    spec = pv.inputs["spec"]
    assert spec["csi"] == {
        "driver": "efs.csi.aws.com",
        "volumeHandle": "fs-0f1e2d3c4b5a69788::fsap-0a9b8c7d6e5f40312",
    }
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    # The CSI driver adds tls itself with an access point (and warns when it is also given).
    assert "mountOptions" not in spec
    assert spec["storageClassName"] == ""
    mount_targets = {r.urn for r in aws_run.of_type("aws:efs/mountTarget:MountTarget")}
    assert mount_targets <= set(pv.dependencies)
    pvc = aws_run.one("kubernetes:core/v1:PersistentVolumeClaim").inputs
    assert pvc["metadata"]["namespace"] == "ray"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["volumeName"] == "shared-pv-5f4e3d2c"  # the PV's auto-name (mock)


def test_efs_csi_driver_installed_only_when_asked() -> None:
    dev, prod = cached_run("dev"), cached_run("prod")  # dev: install, prod: preinstalled
    addon_reg = dev.one("aws:eks/addon:Addon")
    addon = addon_reg.inputs
    assert addon["addonName"] == "aws-efs-csi-driver" and addon["clusterName"] == "ml-dev"
    assert addon["addonVersion"] == "v2.1.4-eksbuild.1"  # pinned by the stack
    assert addon_reg.retain_on_delete  # a cluster-wide driver: destroy leaves it
    roles = {r.name: r for r in dev.of_type("aws:iam/role:Role")}
    trust = json.loads(roles["efs-csi-irsa-role"].inputs["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]
    # The controller and the node DaemonSet's accounts, as AWS's add-on guide writes it.
    assert condition["StringLike"] == {
        f"{ISSUER}:sub": "system:serviceaccount:kube-system:efs-csi-*"
    }
    assert condition["StringEquals"] == {f"{ISSUER}:aud": "sts.amazonaws.com"}
    attach = dev.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment").inputs
    assert attach["policyArn"] == ("arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy")
    assert not prod.of_type("aws:eks/addon:Addon")


# --- S3 ----------------------------------------------------------------------------------------


def test_bucket_blocks_public_access_and_acls(aws_run: ProgramRun) -> None:
    block = aws_run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    for flag in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block[flag] is True, flag
    ownership = aws_run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_bucket_versioned_with_multipart_cleanup(aws_run: ProgramRun) -> None:
    versioning = aws_run.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    rules = aws_run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs[
        "rules"
    ]
    assert rules[0]["status"] == "Enabled"
    assert rules[0]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_bucket_policy_is_tls_only(aws_run: ProgramRun) -> None:
    reg = aws_run.one("aws:s3/bucketPolicy:BucketPolicy")
    (statement,) = _policy(reg)["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [
        "arn:aws:s3:::artifacts-bucket-a1b2c3d",
        "arn:aws:s3:::artifacts-bucket-a1b2c3d/*",
    ]
    block = aws_run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.urn in reg.dependencies


def test_encryption_sse_s3_in_dev_and_rotating_kms_in_prod() -> None:
    sse_type = (
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    dev_rule = cached_run("dev").one(sse_type).inputs["rules"][0]
    assert dev_rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    assert not cached_run("dev").of_type("aws:kms/key:Key")

    prod = cached_run("prod")
    key = prod.one("aws:kms/key:Key", "artifacts-key")
    assert key.inputs["enableKeyRotation"] is True
    prod_rule = prod.one(sse_type).inputs["rules"][0]
    key_arn = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert prod_rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": key_arn,
    }


# --- IRSA --------------------------------------------------------------------------------------


def test_irsa_trust_is_the_head_and_worker_accounts_with_audience(aws_run: ProgramRun) -> None:
    role = next(r for r in aws_run.of_type("aws:iam/role:Role") if r.name == "ray-irsa-role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {
        "Federated": f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
    }
    assert statement["Condition"] == {
        "StringEquals": {
            f"{ISSUER}:sub": [
                "system:serviceaccount:ray:ray-head",
                "system:serviceaccount:ray:ray-worker",
            ],
            f"{ISSUER}:aud": "sts.amazonaws.com",
        }
    }


def test_irsa_policy_scoped_to_bucket_prefix_without_wildcard_actions(
    aws_run: ProgramRun,
) -> None:
    prefix = "ray/dev" if aws_run.outputs["mode"] == "dev" else "ray/prod"
    policy = _policy(aws_run.one("aws:iam/rolePolicy:RolePolicy"))
    statements = {s["Sid"]: s for s in policy["Statement"]}
    bucket_arn = "arn:aws:s3:::artifacts-bucket-a1b2c3d"
    assert statements["ListStackPrefix"] == {
        "Sid": "ListStackPrefix",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket_arn,
        # The bare prefix too: `aws s3 ls s3://bucket/ray/dev` asks with prefix=ray/dev.
        "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/", f"{prefix}/*"]}},
    }
    objects = statements["ObjectsUnderStackPrefix"]
    assert objects["Resource"] == f"{bucket_arn}/{prefix}/*"
    for s in policy["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions)
        assert s["Resource"] != "*" and s["Effect"] == "Allow"


def test_prod_role_may_use_the_bucket_key() -> None:
    policy = _policy(cached_run("prod").one("aws:iam/rolePolicy:RolePolicy"))
    kms = next(s for s in policy["Statement"] if s["Sid"] == "UseBucketKey")
    assert kms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"].startswith("arn:aws:kms:us-west-2:123456789012:key/")


def test_workers_have_their_own_service_account_with_the_same_identity(
    aws_run: ProgramRun,
) -> None:
    """KubeRay binds its autoscaler Role (patch pods, patch the RayCluster) to the head's
    ServiceAccount; workers run user code and must not carry it."""
    accounts = {
        r.inputs["metadata"]["name"]: r.inputs
        for r in aws_run.of_type("kubernetes:core/v1:ServiceAccount")
    }
    assert set(accounts) == {"ray-head", "ray-worker"}
    for sa in accounts.values():
        assert sa["metadata"]["namespace"] == "ray"
        assert sa["metadata"]["annotations"] == {
            "eks.amazonaws.com/role-arn": aws_run.outputs["irsaRoleArn"]
        }
    assert accounts["ray-head"]["automountServiceAccountToken"] is True  # the autoscaler
    assert accounts["ray-worker"]["automountServiceAccountToken"] is False
    spec = _raycluster(aws_run)["spec"]
    assert spec["headGroupSpec"]["template"]["spec"]["serviceAccountName"] == "ray-head"
    workers = [g["template"]["spec"]["serviceAccountName"] for g in spec["workerGroupSpecs"]]
    assert workers and all(w == "ray-worker" for w in workers)


# --- protection --------------------------------------------------------------------------------


def test_prod_protects_and_retains_stateful_resources() -> None:
    prod = cached_run("prod")
    for typ in (*STATEFUL, "aws:kms/key:Key", *ECR_KEPT):
        regs = prod.of_type(typ)
        assert regs, typ
        for reg in regs:
            assert reg.protect and reg.retain_on_delete, reg.name
    assert prod.one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is False


def test_dev_is_destroyable() -> None:
    dev = cached_run("dev")
    kept = {r.name for r in dev.registrations if r.protect or r.retain_on_delete}
    # Only the cluster-wide EFS CSI driver stays, with its identity: other workloads may mount
    # with it.
    assert kept == {
        "efs-csi-driver",
        "efs-csi-irsa-role",
        "efs-csi-irsa-managed-0",
    }
    assert dev.one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is True


# --- structure ---------------------------------------------------------------------------------


def test_every_resource_has_a_component_or_provider_parent(aws_run: ProgramRun) -> None:
    components = {r.urn for r in aws_run.registrations if not r.custom}
    top_level = {
        "kubernetes:core/v1:Namespace",
        "pulumi:providers:kubernetes",
        "pulumi:providers:aws",
        "aws:eks/addon:Addon",
    }
    for reg in aws_run.registrations:
        if reg.custom and reg.type not in top_level:
            assert reg.parent in components, f"{reg.type} {reg.name} has no component parent"
    tokens = {r.type for r in aws_run.registrations if not r.custom}
    assert {
        "ray-platform:aws:EfsFileSystem",
        "ray-platform:aws:ArtifactBucket",
        "ray-platform:aws:IrsaRole",
        "ray-platform:kubernetes:SharedVolume",
        "ray-platform:kuberay:KubeRayOperator",
        "ray-platform:kuberay:RayCluster",
    } <= tokens


def test_kubernetes_objects_use_the_eks_provider(aws_run: ProgramRun) -> None:
    provider = aws_run.one("pulumi:providers:kubernetes")
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    user = kubeconfig["users"][0]["user"]["exec"]
    assert user["command"] == "aws" and "get-token" in user["args"]
    assert kubeconfig["clusters"][0]["cluster"]["server"].endswith(".eks.amazonaws.com")
    for reg in aws_run.registrations:
        if reg.type.startswith("kubernetes:") and reg.custom:
            assert reg.provider.startswith(provider.urn), reg.name


# --- KubeRay -----------------------------------------------------------------------------------


def test_operator_chart_pinned_without_its_crds(aws_run: ProgramRun) -> None:
    release = aws_run.one("kubernetes:helm.sh/v3:Release", "kuberay-release")
    inputs = release.inputs
    assert inputs["chart"] == "kuberay-operator" and inputs["version"] == "1.6.1"
    assert inputs["repositoryOpts"] == {"repo": "https://ray-project.github.io/kuberay-helm/"}
    assert inputs["skipCrds"] is True
    assert inputs["namespace"] == "kuberay-system"
    assert inputs["values"]["watchNamespace"] == ["ray"]
    # Roles in the Ray namespace, not a ClusterRole reading every namespace's secrets.
    assert inputs["values"]["singleNamespaceInstall"] is True
    resources = inputs["values"]["resources"]
    assert resources["requests"] == resources["limits"]
    crds = aws_run.one("kubernetes:helm.sh/v3:Release", "kuberay-crds")
    assert crds.urn in release.dependencies


PLURALS = ("rayclusters", "rayjobs", "rayservices", "raycronjobs")


def test_crds_are_the_pinned_release_and_come_before_the_raycluster(
    aws_run: ProgramRun,
) -> None:
    """The CRDs are a Helm release of a chart the program writes: every CRD file of the pinned
    KubeRay release as a template, unchanged, and a chart version carrying their digest (what
    the release diffs), named by a path relative to the project directory."""
    crds = aws_run.one("kubernetes:helm.sh/v3:Release", "kuberay-crds")
    inputs = crds.inputs
    assert inputs["name"] == "kuberay-crds" and inputs["namespace"] == "ray"
    kept = aws_run.outputs["mode"] == "prod"  # Helm's keep policy where CRDs are retained
    assert inputs["version"] == kuberay_release.chart_version("1.6.1", kept)
    assert inputs["version"].startswith("1.6.1+crds.")
    assert inputs["chart"].startswith("./.kuberay-crds/1.6.1_crds.")
    chart = Path.cwd() / inputs["chart"]
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert chart_yaml["version"] == inputs["version"] and chart_yaml["appVersion"] == "1.6.1"
    templates = sorted(p.name for p in (chart / "templates").iterdir())
    assert templates == kuberay_release.crd_files("1.6.1")
    # Each template is one upstream CRD as JSON (what the release installs), nothing added.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    upstream = {
        d["metadata"]["name"]: d
        for d in yaml.load_all(kuberay_release.crd_yaml("1.6.1"), loader)
        if d
    }
    installed = {
        d["metadata"]["name"]: d
        for d in (json.loads((chart / "templates" / n).read_text()) for n in templates)
    }
    for crd in installed.values():
        if kept:
            assert crd["metadata"]["annotations"].pop("helm.sh/resource-policy") == "keep"
            if not crd["metadata"]["annotations"]:
                del crd["metadata"]["annotations"]
    assert installed == upstream
    assert sorted(installed) == [f"{p}.ray.io" for p in sorted(PLURALS)]
    assert "values" not in inputs and "repositoryOpts" not in inputs
    rc = aws_run.one("kubernetes:ray.io/v1:RayCluster")
    assert crds.urn in rc.dependencies
    release = aws_run.one("kubernetes:helm.sh/v3:Release", "kuberay-release")
    assert release.urn in rc.dependencies


def test_raycluster_shape(aws_run: ProgramRun) -> None:
    rc = _raycluster(aws_run)
    assert rc["metadata"]["namespace"] == "ray" and rc["metadata"]["name"] == "ray"
    spec = rc["spec"]
    assert spec["rayVersion"] == "2.60.0"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == 60
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert spec["authOptions"] == {"mode": "token"}
    group = spec["workerGroupSpecs"][0]
    assert group["groupName"] == "cpu" and "replicas" not in group
    assert (group["minReplicas"], group["maxReplicas"]) == (
        (0, 4) if aws_run.outputs["mode"] == "dev" else (1, 10)
    )


def test_memory_request_equals_limit_everywhere(aws_run: ProgramRun) -> None:
    for pod in _pods(aws_run):
        for c in pod["containers"]:
            assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"]


def test_shared_volume_and_writable_tmp_on_every_pod(aws_run: ProgramRun) -> None:
    for pod in _pods(aws_run):
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["/mnt/shared"] == "shared" and mounts["/tmp/ray"] == "ray-logs"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shared"]["persistentVolumeClaim"] == {"claimName": "ray-shared"}
        assert volumes["ray-logs"] == {"name": "ray-logs", "emptyDir": {}}
        assert pod["securityContext"]["runAsUser"] == 1000


def test_bucket_uri_and_region_in_every_container(aws_run: ProgramRun) -> None:
    for pod in _pods(aws_run):
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["RAY_PLATFORM_BUCKET_URI"] == aws_run.outputs["bucketUri"]
        assert env["AWS_REGION"] == "us-west-2"


def test_dev_generic_image_with_shared_packages_on_pythonpath() -> None:
    dev = cached_run("dev")
    spec = _raycluster(dev)["spec"]
    head = spec["headGroupSpec"]["template"]["spec"]
    assert head["containers"][0]["image"] == "rayproject/ray:2.60.0-py311"
    install = next(c for c in head["initContainers"] if c["name"] == "install-shared-packages")
    install_env = {e["name"]: e["value"] for e in install["env"]}
    # The image lacks JupyterLab: it is installed with the shared packages.
    assert install_env["REQUIREMENTS"] == "scikit-learn==1.5.2\njupyterlab==4.6.6"
    target = install_env["TARGET"]
    assert target.startswith("/mnt/shared/python-packages/")
    for pod in _pods(dev):
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["PYTHONPATH"] == f"{target}/site-packages"


def test_dev_runtime_env_exported_and_mounted_on_head() -> None:
    dev = cached_run("dev")
    assert json.loads(dev.outputs["runtimeEnv"]) == {"pip": ["pandas==2.2.3"]}
    cm = dev.one("kubernetes:core/v1:ConfigMap").inputs
    assert json.loads(cm["data"]["runtime_env.json"]) == {"pip": ["pandas==2.2.3"]}
    head = _raycluster(dev)["spec"]["headGroupSpec"]["template"]["spec"]
    volume = next(v for v in head["volumes"] if v.get("configMap"))
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    env = {e["name"]: e.get("value") for e in head["containers"][0]["env"]}
    assert env["RAY_PLATFORM_RUNTIME_ENV"] == f"{mount['mountPath']}/runtime_env.json"


def test_prod_runs_the_digest_image_without_package_installs() -> None:
    prod = cached_run("prod")
    spec = _raycluster(prod)["spec"]
    for pod in _pods(prod):
        assert "@sha256:" in pod["containers"][0]["image"]
        assert "initContainers" not in pod
        env = {e["name"] for e in pod["containers"][0]["env"]}
        assert "PYTHONPATH" not in env
    runtime_env = json.loads(prod.outputs["runtimeEnv"])
    assert not {"pip", "conda", "uv"} & set(runtime_env)
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}


# --- outputs -----------------------------------------------------------------------------------


def test_outputs(aws_run: ProgramRun) -> None:
    out = aws_run.outputs
    stack_prefix = "ray/dev" if out["mode"] == "dev" else "ray/prod"
    assert out["dashboardPortForward"] == "kubectl -n ray port-forward svc/ray-head-svc 8265:8265"
    assert out["rayAddress"] == "http://127.0.0.1:8265"
    assert out["bucketUri"] == f"s3://artifacts-bucket-a1b2c3d/{stack_prefix}"
    assert out["fileSystemId"] == "fs-0f1e2d3c4b5a69788"
    assert out["sharedMountPath"] == "/mnt/shared"
    assert out["irsaRoleArn"].startswith("arn:aws:iam::123456789012:role/ray-irsa-role")
    assert json.loads(out["runtimeEnv"]) is not None
    assert "get secret ray" in out["authTokenCommand"]


@pytest.mark.parametrize("disabled", ["sharedFilesystem", "artifactBucket"])
def test_storage_pieces_can_be_turned_off(disabled: str) -> None:
    config = copy.deepcopy(stack_config("dev"))
    config["ray-platform:storage"].setdefault(disabled, {})["enabled"] = False
    config["ray-platform:ray"].pop("sharedPackages")
    config["ray-platform:ray"].pop("jupyter")
    run = run_program("dev", config)
    if disabled == "sharedFilesystem":
        assert not run.of_type("aws:efs/fileSystem:FileSystem")
        assert "fileSystemId" not in run.outputs
        head = _raycluster(run)["spec"]["headGroupSpec"]["template"]["spec"]
        assert all(v["name"] != "shared" for v in head["volumes"])
    else:
        assert not run.of_type("aws:s3/bucket:Bucket")
        assert "bucketUri" not in run.outputs
        assert not run.of_type("aws:iam/rolePolicy:RolePolicy")
    assert len(run.of_type("kubernetes:core/v1:ServiceAccount")) == 2


# --- lifecycle options -------------------------------------------------------------------------


def test_raycluster_pods_are_recreated_by_kuberay_not_by_replacing_the_cluster(
    aws_run: ProgramRun,
) -> None:
    """KubeRay >= 1.6 recreates every pod on a spec change (upgradeStrategy Recreate): the
    RayCluster is updated in place, so its auth token Secret survives a change."""
    rc = aws_run.one("kubernetes:ray.io/v1:RayCluster")
    assert rc.inputs["spec"]["upgradeStrategy"] == {"type": "Recreate"}
    assert rc.replace_on_changes == [] and not rc.delete_before_replace


def test_mount_targets_named_by_zone_and_replaced_delete_first(aws_run: ProgramRun) -> None:
    targets = aws_run.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(t.name for t in targets) == [
        "shared-fs-mt-us-west-2a",
        "shared-fs-mt-us-west-2b",
        "shared-fs-mt-us-west-2c",
        "shared-fs-mt-us-west-2d",
        "shared-fs-mt-us-west-2e",
    ]
    assert all(t.delete_before_replace for t in targets)


def test_prod_keeps_the_bucket_guards_and_crds_with_the_bucket() -> None:
    prod = cached_run("prod")
    for typ in (
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    ):
        reg = prod.one(typ)
        assert reg.protect and reg.retain_on_delete, typ
    prod_crds = prod.one("kubernetes:helm.sh/v3:Release", "kuberay-crds")
    assert prod_crds.retain_on_delete
    dev_crds = cached_run("dev").one("kubernetes:helm.sh/v3:Release", "kuberay-crds")
    assert not dev_crds.retain_on_delete
    # retainOnDelete covers deleting the release; Helm's keep policy covers what Helm itself
    # would delete (an upgrade to a chart without a CRD, a rollback, an uninstall).
    for release, kept in ((prod_crds, True), (dev_crds, False)):
        for template in (Path.cwd() / release.inputs["chart"] / "templates").iterdir():
            annotations = json.loads(template.read_text())["metadata"].get("annotations") or {}
            assert (annotations.get("helm.sh/resource-policy") == "keep") is kept, template


def test_namespaced_objects_wait_for_the_namespace(aws_run: ProgramRun) -> None:
    ns = aws_run.one("kubernetes:core/v1:Namespace", "ray-namespace")
    for typ in (
        "kubernetes:core/v1:ServiceAccount",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:ray.io/v1:RayCluster",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:helm.sh/v3:Release",  # its Roles go into the Ray namespace
    ):
        assert all(ns.urn in r.dependencies for r in aws_run.of_type(typ)), typ


def test_raycluster_waits_for_its_claim_and_service_account(aws_run: ProgramRun) -> None:
    # A component dependency reaches the engine as its children.
    rc = aws_run.one("kubernetes:ray.io/v1:RayCluster")
    for typ in ("kubernetes:core/v1:PersistentVolumeClaim", "kubernetes:core/v1:ServiceAccount"):
        assert all(r.urn in rc.dependencies for r in aws_run.of_type(typ)), typ


def test_subnet_preference_per_zone() -> None:
    from infra.clouds.aws.lookup import Subnet, one_private_subnet_per_zone

    subnets = [
        Subnet("subnet-b", "us-west-2a", False, {}),
        Subnet("subnet-a", "us-west-2a", True, {}),
        Subnet("subnet-c", "us-west-2b", False, {"kubernetes.io/role/elb": "1"}),
        Subnet("subnet-d", "us-west-2c", False, {}),
        Subnet("subnet-e", "us-west-2c", False, {"kubernetes.io/role/internal-elb": "1"}),
        Subnet("subnet-f", "us-west-2d", True, {"kubernetes.io/role/elb": "1"}),
    ]
    assert one_private_subnet_per_zone(subnets) == {
        "us-west-2a": "subnet-b",
        "us-west-2b": "subnet-c",
        "us-west-2c": "subnet-e",
        "us-west-2d": "subnet-f",
    }


def test_existing_namespace_is_used_not_managed() -> None:
    config = copy.deepcopy(stack_config("dev"))
    config.setdefault("ray-platform:kubernetes", {})["createNamespace"] = False
    run = run_program("dev", config)
    names = [r.inputs["metadata"]["name"] for r in run.of_type("kubernetes:core/v1:Namespace")]
    assert names == ["kuberay-system"]
    assert run.one("kubernetes:ray.io/v1:RayCluster").inputs["metadata"]["namespace"] == "ray"


def test_extra_node_security_groups_may_reach_nfs() -> None:
    config = copy.deepcopy(stack_config("dev"))
    # The cluster group listed again must not become a duplicate rule (an AWS error).
    config["ray-platform:aws"]["efs"] = {
        "allowedSecurityGroups": ["sg-0123456789abcdef0", CLUSTER_SG]
    }
    run = run_program("dev", config)
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    sources = sorted(r.inputs["referencedSecurityGroupId"] for r in rules)
    assert sources == sorted([CLUSTER_SG, "sg-0123456789abcdef0"])
    assert all(r.inputs["fromPort"] == r.inputs["toPort"] == 2049 for r in rules)


def test_renamed_operator_token_keeps_deployed_stacks_resources(aws_run: ProgramRun) -> None:
    """The token now matches the class; the old token is an alias, so `up` does not replace."""
    operator = aws_run.one("ray-platform:kuberay:KubeRayOperator")
    assert any('"ray-platform:kuberay:Operator"' in a for a in operator.aliases)


def test_component_options_arrive_through_opts(aws_run: ProgramRun) -> None:
    """The provider reaches Kubernetes children through the component's `providers`, and the
    component's `depends_on` reaches the children that need it."""
    provider = aws_run.one("pulumi:providers:kubernetes")
    raycluster = aws_run.one("kubernetes:ray.io/v1:RayCluster")
    assert raycluster.provider.startswith(provider.urn)
    release = aws_run.one("kubernetes:helm.sh/v3:Release", "kuberay-release")
    claim = aws_run.one("kubernetes:core/v1:PersistentVolumeClaim")
    assert {release.urn, claim.urn} <= set(raycluster.dependencies)
    sa = aws_run.one("kubernetes:core/v1:ServiceAccount", "ray-irsa-sa-ray-head")
    namespace = aws_run.one("kubernetes:core/v1:Namespace", "ray-namespace")
    assert namespace.urn in sa.dependencies and sa.provider.startswith(provider.urn)
    role = aws_run.one("aws:iam/role:Role", "ray-irsa-role")
    assert namespace.urn not in role.dependencies  # only the Kubernetes child waits for it


# --- hardening -------------------------------------------------------------------------------

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_ray_namespace_enforces_restricted_pod_security(aws_run: ProgramRun) -> None:
    labels = aws_run.one("kubernetes:core/v1:Namespace", "ray-namespace").inputs["metadata"][
        "labels"
    ]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_every_container_the_program_puts_in_ray_pods_is_restricted(aws_run: ProgramRun) -> None:
    spec = _raycluster(aws_run)["spec"]
    seen = 0
    for pod in _pods(aws_run):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in [*pod["containers"], *pod.get("initContainers", [])]:
            assert container["securityContext"] == RESTRICTED_CONTAINER, container["name"]
            seen += 1
    assert seen >= 2
    # The autoscaler sidecar KubeRay injects takes its context from here.
    assert spec["autoscalerOptions"]["securityContext"] == RESTRICTED_CONTAINER


def test_autoscaler_v2_with_never_restarting_pods(aws_run: ProgramRun) -> None:
    spec = _raycluster(aws_run)["spec"]
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert all(p["restartPolicy"] == "Never" for p in _pods(aws_run))


def test_network_policy_admits_only_the_cluster_itself(aws_run: ProgramRun) -> None:
    """The operator makes no calls into the pods of a plain RayCluster (KubeRay 1.6.1 uses its
    dashboard client in the RayJob and RayService controllers only): no rule admits it."""
    policy = aws_run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == "ray"
    assert spec["podSelector"] == {"matchLabels": {"ray.io/cluster": "ray"}}
    assert spec["policyTypes"] == ["Ingress"]  # egress stays open by default
    assert spec["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": "ray"}}}]}
    ]


def test_network_policy_settings_open_namespaces_and_close_egress() -> None:
    config = copy.deepcopy(stack_config("dev"))
    config.setdefault("ray-platform:kubernetes", {})["networkPolicy"] = {
        "allowFromNamespaces": ["notebooks"],
        "restrictEgress": True,
    }
    spec = (
        run_program("dev", config)
        .one("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        .inputs["spec"]
    )
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"][-1] == {
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "notebooks"}}}
        ]
    }
    assert {"ports": [{"protocol": "TCP", "port": 443}]} in spec["egress"]
    # What the cloud's identity needs beyond HTTPS (EKS Pod Identity's agent).
    assert {
        "to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}],
        "ports": [{"protocol": "TCP", "port": 80}],
    } in spec["egress"]


def test_nfs_narrowed_to_named_security_groups() -> None:
    config = copy.deepcopy(stack_config("dev"))
    config["ray-platform:aws"]["efs"] = {"allowedSecurityGroups": ["sg-0123456789abcdef0"]}
    rules = run_program("dev", config).of_type(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    )
    assert sorted(r.inputs["referencedSecurityGroupId"] for r in rules) == sorted(
        [CLUSTER_SG, "sg-0123456789abcdef0"]
    )
    assert all("cidrIpv4" not in r.inputs for r in rules)


def test_named_mount_target_subnets() -> None:
    config = copy.deepcopy(stack_config("dev"))
    config["ray-platform:aws"]["efs"] = {
        "subnetIds": ["subnet-0priv2a0000000002", "subnet-0priv2b0000000003"]
    }
    targets = run_program("dev", config).of_type("aws:efs/mountTarget:MountTarget")
    assert {t.name: t.inputs["subnetId"] for t in targets} == {
        "shared-fs-mt-us-west-2a": "subnet-0priv2a0000000002",
        "shared-fs-mt-us-west-2b": "subnet-0priv2b0000000003",
    }


class RotatedAliasMocks(PlatformMocks):
    """The same account after a key rotation: every alias names another key."""

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        answer = super().call(args)
        if args.token == "aws:kms/getAlias:getAlias":
            rotated = answer["targetKeyArn"].replace("5c1d0000", "9e8f0000")
            answer = {**answer, "targetKeyArn": rotated, "targetKeyId": rotated.rsplit("/")[-1]}
        return answer


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize(
    "key",
    [
        "arn:aws:kms:us-west-2:123456789012:alias/ray-efs",
        "arn:aws:kms:us-west-2:123456789012:key/0000aaaa-1111-2222-3333-444455556666",
    ],
    ids=["alias", "key-arn"],
)
def test_a_key_rotation_outside_the_settings_never_replaces_the_file_system(
    stack: str, key: str
) -> None:
    """`kms_key_id` replaces an EFS file system. Re-pointing an alias (a rotation, outside the
    settings) must change none of its inputs: the program refuses an alias (naming the key
    ARN to use), and a key ARN is used as is, whatever the aliases say."""
    config = copy.deepcopy(stack_config(stack))
    config["ray-platform:aws"]["efs"] = {"kmsKeyArn": key}
    inputs = []
    for mocks in (PlatformMocks(), RotatedAliasMocks()):
        monitor = RecordingMonitor(mocks)
        try:
            run = run_program(stack, config, mocks=mocks, monitor=monitor)
        except SettingsError as err:
            assert "set the key ARN instead" in str(err) and "\n" not in str(err)
            assert monitor.registered_resources == []
            continue
        inputs.append(run.one("aws:efs/fileSystem:FileSystem").inputs)
        assert not [c for c in run.calls if c[0] == "aws:kms/getAlias:getAlias"]
    if inputs:
        before, after = inputs
        assert before == after
        assert after["kmsKeyId"] == key


def test_prod_retains_the_file_system_guards() -> None:
    prod = cached_run("prod")
    for typ in ("aws:efs/fileSystemPolicy:FileSystemPolicy", "aws:efs/backupPolicy:BackupPolicy"):
        reg = prod.one(typ)
        assert reg.protect and reg.retain_on_delete, typ


def test_shared_packages_are_a_stack_output_for_the_cli() -> None:
    """`ray-platform submit` refuses --pip for these: it reads them from the stack."""
    assert json.loads(cached_run("dev").outputs["sharedPackages"]) == [
        "scikit-learn==1.5.2",
        "jupyterlab==4.6.6",
    ]
    assert json.loads(cached_run("prod").outputs["sharedPackages"]) == []


def test_working_dir_zips_expire_under_the_stacks_prefix(aws_run: ProgramRun) -> None:
    """`ray-platform submit` uploads a zip per code change and never deletes one: they expire
    (storage.artifactBucket.workingDirExpiryDays, default 30), only under the stack's
    working_dirs/ prefix, and the delete markers versioning leaves behind go too."""
    from contract.outputs import WORKING_DIRS

    rules = aws_run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs[
        "rules"
    ]
    prefix = f"{aws_run.outputs['bucketUri'].split('/', 3)[3]}/{WORKING_DIRS}/"
    scoped = [r for r in rules if r["filter"] != {}]
    assert scoped == [
        {
            "id": "expire-prefix-0",
            "status": "Enabled",
            "filter": {"prefix": prefix},
            "expiration": {"days": 30},
        },
        {
            "id": "expire-prefix-0-markers",
            "status": "Enabled",
            "filter": {"prefix": prefix},
            "expiration": {"expiredObjectDeleteMarker": True},
        },
    ]
    assert prefix in ("ray/dev/working_dirs/", "ray/prod/working_dirs/")


def test_working_dir_expiry_is_a_setting() -> None:
    config = copy.deepcopy(stack_config("dev"))
    config["ray-platform:storage"]["artifactBucket"]["workingDirExpiryDays"] = 7
    rules = (
        run_program("dev", config)
        .one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        .inputs["rules"]
    )
    assert next(r for r in rules if r["id"] == "expire-prefix-0")["expiration"] == {"days": 7}


def test_versioned_bucket_expires_noncurrent_versions(aws_run: ProgramRun) -> None:
    rules = aws_run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs[
        "rules"
    ]
    expire = next(r for r in rules if r["id"] == "expire-noncurrent-versions")
    assert expire["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
    assert expire["status"] == "Enabled"


# --- Jupyter (dev) ---------------------------------------------------------------------------


def test_dev_head_runs_jupyter_behind_a_token_from_a_secret() -> None:
    dev = cached_run("dev")
    head = _raycluster(dev)["spec"]["headGroupSpec"]["template"]["spec"]
    (ray_head,) = head["containers"]
    jupyter = head["initContainers"][-1]
    assert ray_head["name"] == "ray-head" and jupyter["name"] == "jupyter"
    assert jupyter["image"] == ray_head["image"]
    assert "--ServerApp.ip=127.0.0.1" in jupyter["command"]  # port-forward only
    # The token as a read-only file from the Secret, never an environment variable.
    (token,) = [e for e in jupyter["env"] if e["name"] == "JUPYTER_TOKEN_FILE"]
    assert token["value"] == "/etc/jupyter-token/token"
    assert not [e for e in jupyter["env"] if e["name"] == "JUPYTER_TOKEN"]
    (volume,) = [v for v in head["volumes"] if v["name"] == "jupyter-token"]
    assert volume["secret"]["secretName"] == "ray-jupyter"
    # ray.init() in a notebook: KubeRay gives the Ray token only to its own containers, so the
    # cluster's token Secret is mounted into Jupyter as a file.
    env = {e["name"]: e.get("value") for e in jupyter["env"]}
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == "/etc/ray-auth/auth_token"
    assert "RAY_PLATFORM_RUNTIME_ENV" not in env  # that file is mounted on the Ray container
    (auth,) = [v for v in head["volumes"] if v["name"] == "ray-auth-token"]
    assert auth["secret"]["secretName"] == "ray"  # KubeRay's Secret, named like the cluster
    assert auth["secret"]["items"] == [{"key": "auth_token", "path": "auth_token"}]
    assert jupyter["securityContext"] == RESTRICTED_CONTAINER
    mounts = {m["mountPath"] for m in jupyter["volumeMounts"]}
    assert "/mnt/shared" in mounts
    secret = dev.one("kubernetes:core/v1:Secret")
    assert secret.inputs["metadata"]["name"] == "ray-jupyter"
    # Registered as a Pulumi secret: encrypted in state, masked in every output.
    data = secret.inputs["stringData"]
    assert data[rpc._special_sig_key] == rpc._special_secret_sig
    assert data["value"] == {"token": TEST_SECRETS["ray-platform:jupyterToken"]}
    rc = dev.one("kubernetes:ray.io/v1:RayCluster")
    assert secret.urn in rc.dependencies
    out = dev.outputs
    assert out["jupyterUrl"] == "http://127.0.0.1:8888/lab"
    assert "port-forward" in out["jupyterPortForward"] and "8888:8888" in out["jupyterPortForward"]
    assert "exec -it" in out["headShellCommand"]


def test_prod_renders_no_jupyter_and_no_installs() -> None:
    prod = cached_run("prod")
    head = _raycluster(prod)["spec"]["headGroupSpec"]["template"]["spec"]
    assert [c["name"] for c in head["containers"]] == ["ray-head"]
    assert "initContainers" not in head
    assert not prod.of_type("kubernetes:core/v1:Secret")
    assert "jupyterUrl" not in prod.outputs


def test_efs_is_mountable_only_through_the_access_point(aws_run: ProgramRun) -> None:
    """NFS is open to the VPC: the file-system policy must refuse a mount of the root that
    bypasses the access point (uid/gid enforcement, the /ray root)."""
    statements = _policy(aws_run.one("aws:efs/fileSystemPolicy:FileSystemPolicy"))["Statement"]
    (only_ap,) = [s for s in statements if s["Sid"] == "OnlyThroughTheAccessPoint"]
    assert only_ap["Effect"] == "Deny"
    assert "elasticfilesystem:ClientRootAccess" in only_ap["Action"]
    assert only_ap["Condition"] == {
        "StringNotEquals": {
            "elasticfilesystem:AccessPointArn": (
                "arn:aws:elasticfilesystem:us-west-2:123456789012:access-point/fsap-0a9b8c7d6e5f40312"
            )
        }
    }


def test_efs_mount_targets_only_in_availability_zones() -> None:
    """EFS has no mount targets in Local Zones or Wavelength; other partitions' zones count."""
    from infra.clouds.aws.lookup import _STANDARD_ZONE

    for zone in ("us-west-2a", "us-gov-west-1a", "us-iso-east-1a", "eusc-de-east-1a"):
        assert _STANDARD_ZONE.match(zone), zone
    for zone in ("us-west-2-lax-1a", "us-east-1-wl1-bos-wlz-1"):
        assert not _STANDARD_ZONE.match(zone), zone
