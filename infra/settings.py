"""Stack settings: the stack file's `ray-platform:*` keys parsed once into frozen, typed models.

All validation lives here. A bad setting raises `SettingsError` with one line that names the full
key and the bad value, before any resource is registered. Nothing in this module talks to a cloud.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

NAMESPACE = "ray-platform"

# Keys that exist in Ray's runtime_env (ray.runtime_env.RuntimeEnv); a typo here would otherwise be
# silently carried to every job.
RUNTIME_ENV_KEYS = frozenset(
    {
        "working_dir",
        "py_modules",
        "py_executable",
        "excludes",
        "pip",
        "uv",
        "conda",
        "env_vars",
        "container",
        "image_uri",
        "config",
        "nsight",
        "java_jars",
        "worker_process_setup_hook",
    }
)
# runtime_env keys that install packages at run time: dev only (prod bakes them into the image).
PACKAGE_INSTALL_KEYS = ("pip", "conda", "uv")
# Ray's working_dir upload limit in practice (ray#55877).
WORKING_DIR_LIMIT_BYTES = 100 * 1024 * 1024

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_MEMORY_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
_VERSION_IN_TAG = re.compile(r"(?<![0-9.])(\d+\.\d+\.\d+)(?![0-9A-Za-z])")
# A container image reference: [registry[:port]/]path[:tag][@sha256:digest], path lowercase.
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
# PEP 508 name, optional extras and version specifiers; nothing a shell or pip option could abuse.
_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\s*\[[A-Za-z0-9._, -]+\])?"
    r"(?:\s*(?:===|==|~=|!=|>=|<=|<|>)\s*[A-Za-z0-9.*+!_-]+"
    r"(?:\s*,\s*(?:===|==|~=|!=|>=|<=|<|>)\s*[A-Za-z0-9.*+!_-]+)*"
    r"|\s*@\s*(?:git\+)?https://[^\s;'\"`$]+)?$"
)
_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_EKS_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
# Directories a shared mount must not hide or sit inside (the image, Ray's own state, the system).
_RESERVED_DIRS = (
    "/",
    "/tmp",
    "/tmp/ray",
    "/home",
    "/home/ray",
    "/var",
    "/opt",
    "/root",
    "/run",
    "/mnt",
)
_RESERVED_TREES = (
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/boot",
    "/home/ray/anaconda3",
)
_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+$")


class SettingsError(pulumi.RunError):
    """A stack setting is wrong. The message is one line naming the full key and the bad value.

    Subclasses `pulumi.RunError` so the engine prints the message alone, without a traceback.
    """


def _semver_tuple(version: str) -> tuple[int, int, int]:
    major, minor, patch = version.split("-")[0].split("+")[0].split(".")
    return int(major), int(minor), int(patch)


class _Model(BaseModel):
    """Frozen, closed: an unknown key is an error, never ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)


def _dns_label(value: str, what: str = "a Kubernetes name") -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(f"is not valid as {what} (lowercase letters, digits and '-', at most 63)")
    return value


def _quantity(v: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(v) or not re.search(r"[1-9]", v):
        raise ValueError(f"is not {what}")
    return v


def _memory(v: str) -> str:
    _quantity(v, _MEMORY, "a memory quantity such as 8Gi")
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", v).groups()  # type: ignore[union-attr]
    if float(number) * _MEMORY_UNITS.get(unit, 1) < 256 * 2**20:
        raise ValueError("is below 256Mi, too little for a Ray process")
    return v


def _number_to_str(v: object) -> object:
    """YAML `cpu: 2` is a number; Kubernetes quantities are strings."""
    if isinstance(v, bool):
        return v
    return str(v) if isinstance(v, int | float) else v


def _semver(v: str) -> str:
    if not _SEMVER.match(v):
        raise ValueError("is not a semantic version such as 1.5.1")
    return v


CpuQuantity = Annotated[
    str,
    BeforeValidator(_number_to_str),
    AfterValidator(lambda v: _quantity(v, _CPU, "a CPU quantity such as 500m or 2")),
]
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_number_to_str),
    AfterValidator(_memory),
]


def _namespace(v: str) -> str:
    _dns_label(v, "a Kubernetes namespace")
    if v in ("default", "kube-system", "kube-public", "kube-node-lease"):
        raise ValueError("is a namespace Kubernetes owns; choose your own, e.g. ray")
    return v


def _strict_int(v: object) -> object:
    """YAML `true` is not a replica count."""
    if isinstance(v, bool):
        raise ValueError("must be a whole number, not true/false")
    return v


def _label_map(v: dict[str, str]) -> dict[str, str]:
    for key, value in v.items():
        if len(key) > 253 or not _LABEL_KEY.match(key):
            raise ValueError(f"has an invalid label key {key!r}")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValueError(f"has an invalid label value {value!r} for {key!r}")
    return v


NamespaceName = Annotated[str, AfterValidator(_namespace)]
VolumeSize = Annotated[
    str,
    BeforeValidator(_number_to_str),
    AfterValidator(lambda v: _quantity(v, _MEMORY, "a storage quantity such as 100Gi")),
]
Count = Annotated[int, BeforeValidator(_strict_int), Field(ge=0, le=10_000)]
LabelMap = Annotated[dict[str, str], AfterValidator(_label_map)]
SemVer = Annotated[str, AfterValidator(_semver)]


class KubernetesSettings(_Model):
    """Which cluster, and the namespace Ray runs in."""

    cluster_name: str | None = Field(None, alias="clusterName")
    """EKS / GKE cluster name; everything cloud-specific is looked up from it."""

    @field_validator("cluster_name")
    @classmethod
    def _cluster(cls, v: str | None) -> str | None:
        if v is not None and not _EKS_NAME.match(v):
            raise ValueError("is not a cluster name (letters, digits, '-', '_'; at most 100)")
        return v

    namespace: NamespaceName = "ray"
    create_namespace: bool = Field(True, alias="createNamespace")
    """false: the namespace exists already (e.g. on a shared cluster) and is not managed here."""
    kubeconfig: str | None = None
    """local only: a kubeconfig path; default: $KUBECONFIG or ~/.kube/config."""
    context: str | None = None


class SharedFilesystemSettings(_Model):
    """The shared POSIX file system mounted on every Ray pod."""

    enabled: bool = True
    mount_path: str = Field("/mnt/shared", alias="mountPath")
    kms_key_arn: str | None = Field(None, alias="kmsKeyArn")
    """aws: a customer-managed KMS key for EFS encryption (default: the AWS-managed key)."""
    size: VolumeSize = "100Gi"
    """The PersistentVolume's nominal capacity (EFS is elastic; hostPath ignores it)."""
    host_path: str = Field("/var/lib/ray-platform/shared", alias="hostPath")
    """local: the node directory that backs the volume."""
    allowed_security_groups: tuple[str, ...] = Field((), alias="allowedSecurityGroups")
    """aws: further security groups (e.g. of Karpenter or custom node groups) that may reach NFS;
    the cluster security group always may."""

    @field_validator("allowed_security_groups")
    @classmethod
    def _security_groups(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for sg in v:
            if not re.fullmatch(r"sg-[0-9a-f]{8,17}", sg):
                raise ValueError(f"has {sg!r}, which is not a security group id (sg-…)")
        return v

    @field_validator("mount_path", "host_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        v = v.rstrip("/") or "/"
        if not _PATH.match(v) or "/../" in f"{v}/" or "/./" in f"{v}/" or "//" in v:
            raise ValueError(
                "must be an absolute path of letters, digits, '.', '_', '-' (e.g. /mnt/shared)"
            )
        if v in _RESERVED_DIRS or any(v == t or v.startswith(t + "/") for t in _RESERVED_TREES):
            raise ValueError(
                "would hide or sit inside a directory the image needs; use /mnt/<name>"
            )
        return v

    @field_validator("kms_key_arn")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None and not _ARN.match(v):
            raise ValueError("is not a KMS key or alias ARN")
        return v


class ArtifactBucketSettings(_Model):
    """The object-store bucket for artifacts and working_dir zips."""

    enabled: bool = True
    prefix: str | None = None
    """Key prefix this stack may use; default: the stack name."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None and (not _S3_PREFIX.match(v) or len(v) > 512):
            raise ValueError(
                "is not a key prefix (segments of letters, digits, '.', '_', '-' joined by '/')"
            )
        return v


class StorageSettings(_Model):
    shared_filesystem: SharedFilesystemSettings = Field(
        default_factory=lambda: SharedFilesystemSettings.model_validate({}),
        alias="sharedFilesystem",
    )
    artifact_bucket: ArtifactBucketSettings = Field(
        default_factory=lambda: ArtifactBucketSettings.model_validate({}), alias="artifactBucket"
    )


class OperatorSettings(_Model):
    """The KubeRay operator and its CRDs."""

    version: SemVer = "1.5.1"
    namespace: NamespaceName = "kuberay-system"
    install: Literal["helm", "external"] = "helm"
    """helm: the program installs the kuberay-operator chart. external: an operator already runs
    (e.g. the local control plane's); the program still manages the CRDs."""
    chart_repo: str = Field("https://ray-project.github.io/kuberay-helm/", alias="chartRepo")
    cpu: CpuQuantity = "100m"
    memory: MemoryQuantity = "512Mi"

    @field_validator("chart_repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not re.match(r"^https://\S+$", v):
            raise ValueError("must be an https:// Helm chart repository URL")
        return v


class GroupSettings(_Model):
    cpu: CpuQuantity
    memory: MemoryQuantity
    """Given once: used as both request and limit (Ray sizes its object store from it)."""
    gpu: Annotated[int, BeforeValidator(_strict_int), Field(ge=0, le=64)] = 0
    ray_start_params: dict[str, str] = Field(default_factory=dict, alias="rayStartParams")


class HeadSettings(GroupSettings):
    """The head pod's resources. It runs the driver, the dashboard and (dev) Jupyter."""


class WorkerGroupSettings(GroupSettings):
    """One autoscaled worker group."""

    name: str
    min_replicas: Count = Field(0, alias="minReplicas")
    max_replicas: Count = Field(alias="maxReplicas")
    node_selector: LabelMap = Field(default_factory=dict, alias="nodeSelector")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > 40 or not _DNS1035_LABEL.match(v):
            raise ValueError(
                "is not valid as a worker group name (lowercase letter first, then "
                "letters, digits, '-'; at most 40)"
            )
        return v


class RaySettings(_Model):
    """The RayCluster and how code and dependencies reach it."""

    version: str
    image: str
    cluster_name: str = Field("ray", alias="clusterName")
    head: HeadSettings
    worker_groups: tuple[WorkerGroupSettings, ...] = Field((), alias="workerGroups")
    runtime_env: dict[str, Any] = Field(default_factory=dict, alias="runtimeEnv")
    shared_packages: tuple[str, ...] = Field((), alias="sharedPackages")
    """dev: pip requirement strings installed onto the shared file system (on PYTHONPATH)."""
    idle_timeout_seconds: int = Field(60, alias="idleTimeoutSeconds", ge=10, le=86_400)
    auth: Literal["token", "disabled"] = "token"
    """token: the dashboard / Jobs API need the token KubeRay stores in a Secret (Ray ≥ 2.52)."""

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not _SEMVER.match(v):
            raise ValueError("is not a Ray version such as 2.52.0")
        return v

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, v: str) -> str:
        # KubeRay truncates longer names (utils.CheckName) and wants a DNS-1035 label.
        if len(v) > 50 or not _DNS1035_LABEL.match(v):
            raise ValueError("is not a valid RayCluster name (DNS-1035 label, at most 50)")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not _IMAGE.match(v):
            raise ValueError("is not a valid image reference (registry/path:tag[@sha256:…])")
        if v.endswith(":latest") or ":latest@" in v:
            raise ValueError("is not pinned: never ':latest'")
        return v

    @model_validator(mode="after")
    def _unique_groups(self) -> RaySettings:
        seen: set[str] = set()
        for i, group in enumerate(self.worker_groups):
            if group.name in seen:
                raise _KeyError(f"workerGroups[{i}].name", group.name, "is used by two groups")
            seen.add(group.name)
        return self


class AwsSettings(_Model):
    """AWS-only choices."""

    efs_csi_driver: Literal["install", "preinstalled"] = Field("preinstalled", alias="efsCsiDriver")
    """install: the program adds the aws-efs-csi-driver EKS add-on (with its own IRSA role)."""


class _KeyError(ValueError):
    """A cross-field error raised inside a model validator that knows its sub-key."""

    def __init__(self, key: str, value: object, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.value = value
        self.problem = problem


Mode = Literal["dev", "prod"]
Cloud = Literal["aws", "gcp", "local"]


class Settings(_Model):
    """Everything the program needs, validated."""

    project: str
    stack: str
    mode: Mode
    cloud: Cloud
    region: str | None = None
    kubernetes: KubernetesSettings = Field(
        default_factory=lambda: KubernetesSettings.model_validate({})
    )
    storage: StorageSettings = Field(default_factory=lambda: StorageSettings.model_validate({}))
    operator: OperatorSettings = Field(default_factory=lambda: OperatorSettings.model_validate({}))
    ray: RaySettings
    aws: AwsSettings = Field(default_factory=lambda: AwsSettings.model_validate({}))

    @property
    def bucket_prefix(self) -> str:
        return self.storage.artifact_bucket.prefix or self.stack

    @property
    def protect(self) -> bool:
        """Stateful resources are protected and retained in prod, destroyable in dev."""
        return self.mode == "prod"


# The keys a stack file may set under `ray-platform:`; everything else is an error.
TOP_LEVEL_KEYS = ("mode", "cloud", "kubernetes", "storage", "operator", "ray", "aws")
_STRUCTURED = frozenset({"kubernetes", "storage", "operator", "ray", "aws"})
_SCALAR_ALIASES = {
    "mode": ("dev", "prod"),
    "cloud": ("aws", "gcp", "local"),
}


def _fmt_value(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _message(key: str, value: object, problem: str) -> str:
    """`ray-platform:<key> (<value as JSON>) <problem>`: the one shape of every settings error."""
    return f"{NAMESPACE}:{key} ({_fmt_value(value)}) {problem}"


def setting_error(key: str, value: object, problem: str) -> SettingsError:
    """A SettingsError for one key, for problems found outside this module (cloud lookups)."""
    return SettingsError(_message(key, value, problem))


def _key(path: tuple[int | str, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return f"{NAMESPACE}:{out}"


def _lookup(data: Any, path: tuple[int | str, ...]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False, None
    return True, data


_FRIENDLY = {
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "string_type": 'must be a string (quote it in YAML, e.g. "1.5.1")',
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


def _pydantic_messages(err: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    messages = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p not in ("function-after", "function-before"))
        ctx_err = e.get("ctx", {}).get("error")
        if isinstance(ctx_err, _KeyError):
            sub = tuple(
                int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", ctx_err.key) if p
            )
            messages.append(f"{_key(loc + sub)} ({_fmt_value(ctx_err.value)}) {ctx_err.problem}")
            continue
        found, value = _lookup(raw, loc)
        if e["type"] == "extra_forbidden":
            messages.append(f"{_key(loc)} is not a known setting (check its spelling)")
        elif e["type"] == "missing":
            messages.append(f"{_key(loc)} is required but not set")
        else:
            problem = _FRIENDLY.get(e["type"]) or str(e["msg"]).removeprefix("Value error, ")
            shown = f" ({_fmt_value(value)})" if found else ""
            messages.append(f"{_key(loc)}{shown} {problem}")
    return messages


def _fail(messages: list[str]) -> SettingsError:
    return SettingsError("; ".join(m.replace("\n", " ") for m in messages))


def parse_raw_config(config: Mapping[str, str]) -> dict[str, Any]:
    """Stack config (`ns:key` → string, structured values as JSON) into plain data.

    Only `ray-platform:*` keys are ours; an unknown one is an error. `aws:region` is read through.
    """
    data: dict[str, Any] = {}
    errors = []
    for full_key in sorted(config):
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        value = config[full_key]
        if key not in TOP_LEVEL_KEYS:
            errors.append(f"{full_key} is not a known setting (known: {', '.join(TOP_LEVEL_KEYS)})")
            continue
        if key in _STRUCTURED:
            try:
                data[key] = json.loads(value) if isinstance(value, str) else value
            except json.JSONDecodeError:
                errors.append(f"{full_key} ({_fmt_value(value)}) must be a YAML mapping")
                continue
            if not isinstance(data[key], dict):
                errors.append(f"{full_key} ({_fmt_value(data[key])}) must be a YAML mapping")
        else:
            data[key] = value
    if errors:
        raise _fail(errors)
    return data


def load(
    config: Mapping[str, str],
    *,
    project: str,
    stack: str,
    base_dir: Path | None = None,
) -> Settings:
    """Parse and validate the whole stack config. Raises `SettingsError` (one line) on any problem.

    `base_dir` is where relative paths (runtime_env.working_dir) are resolved: the project dir.
    """
    data = parse_raw_config(config)
    for scalar, allowed in _SCALAR_ALIASES.items():
        if scalar not in data:
            raise _fail(
                [f"{_key((scalar,))} is required but not set (one of {', '.join(allowed)})"]
            )
    region = config.get("aws:region") if data.get("cloud") == "aws" else None
    try:
        settings = Settings.model_validate(
            {**data, "project": project, "stack": stack, "region": region}
        )
    except ValidationError as err:
        raise _fail(_pydantic_messages(err, data)) from None
    errors = cross_field_errors(settings, base_dir or Path.cwd())
    if errors:
        raise _fail(errors)
    return settings


def image_ray_version(image: str) -> str | None:
    """The Ray version an image tag carries (`rayproject/ray:2.52.0-py311` → 2.52.0), if any."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.split(":", 1)[1]
    versions = _VERSION_IN_TAG.findall(tag)
    # `cuda12.4.1-ray2.52.0`: prefer the version Ray tags spell with a `ray` prefix.
    for match in re.finditer(r"ray-?(\d+\.\d+\.\d+)(?![0-9A-Za-z])", tag):
        return match.group(1)
    return versions[0] if versions else None


def _dir_size(path: Path, limit: int) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
            if total > limit:
                break
    return total


def cross_field_errors(s: Settings, base_dir: Path) -> list[str]:
    """Rules that span keys. Each returns one message naming the full key and its value."""
    errors: list[str] = []
    ray = s.ray

    def err(key: str, value: object, problem: str) -> None:
        errors.append(_message(key, value, problem))

    image_version = image_ray_version(ray.image)
    pinned = bool(_DIGEST.search(ray.image))
    if image_version is not None and image_version != ray.version:
        err("ray.image", ray.image, f"carries Ray {image_version} but ray.version is {ray.version}")
    if image_version is None:
        err("ray.image", ray.image, f"needs a tag carrying Ray {ray.version}, e.g. :{ray.version}")
    if s.mode == "prod" and not pinned:
        err("ray.image", ray.image, "must be pinned by digest in prod (…@sha256:<64 hex>)")
    if s.mode == "prod":
        for key in PACKAGE_INSTALL_KEYS:
            if key in ray.runtime_env:
                err(
                    f"ray.runtimeEnv.{key}",
                    ray.runtime_env[key],
                    "installs packages at run time; prod bakes dependencies into the image",
                )
        wheels = [m for m in ray.runtime_env.get("py_modules") or [] if str(m).endswith(".whl")]
        if wheels:
            err(
                "ray.runtimeEnv.py_modules",
                wheels,
                "installs wheels at run time; prod bakes dependencies into the image",
            )
        if ray.shared_packages:
            err(
                "ray.sharedPackages",
                list(ray.shared_packages),
                "is dev only; prod bakes dependencies into the image",
            )
    for i, group in enumerate(ray.worker_groups):
        if group.max_replicas < group.min_replicas:
            err(
                f"ray.workerGroups[{i}].maxReplicas",
                group.max_replicas,
                f"is below minReplicas ({group.min_replicas})",
            )
    if ray.auth == "token":
        if _semver_tuple(ray.version) < (2, 52, 0):
            err("ray.auth", "token", f"needs Ray 2.52.0 or later (ray.version is {ray.version})")
        if _semver_tuple(s.operator.version) < (1, 5, 1):
            err(
                "ray.auth",
                "token",
                f"needs KubeRay 1.5.1 or later (operator.version is {s.operator.version})",
            )
    if ray.shared_packages and not s.storage.shared_filesystem.enabled:
        err(
            "ray.sharedPackages",
            list(ray.shared_packages),
            "needs storage.sharedFilesystem.enabled (packages live on the shared file system)",
        )
    for i, req in enumerate(ray.shared_packages):
        if not _REQUIREMENT.match(req):
            err(f"ray.sharedPackages[{i}]", req, "is not a pip requirement such as pandas==2.2.3")
    errors.extend(_runtime_env_errors(s, base_dir))
    if s.cloud in ("aws", "gcp") and not s.kubernetes.cluster_name:
        errors.append(
            f"{NAMESPACE}:kubernetes.clusterName is required for cloud {s.cloud} "
            "(the cluster's network and identity are looked up from it)"
        )
    if s.cloud == "aws" and not s.region:
        errors.append("aws:region is required for cloud aws (e.g. pulumi config set aws:region …)")
    if s.cloud == "aws" and s.region and not _REGION.match(s.region):
        errors.append(f"aws:region ({_fmt_value(s.region)}) is not an AWS region such as us-west-2")
    if s.cloud != "aws" and s.aws.model_fields_set:
        err("aws", s.aws.model_dump(by_alias=True), "applies to cloud aws only")
    if s.cloud != "local" and "host_path" in s.storage.shared_filesystem.model_fields_set:
        err(
            "storage.sharedFilesystem.hostPath",
            s.storage.shared_filesystem.host_path,
            "applies to cloud local only",
        )
    if s.cloud == "local" and s.kubernetes.cluster_name:
        err(
            "kubernetes.clusterName",
            s.kubernetes.cluster_name,
            "is for cloud aws; cloud local uses $KUBECONFIG or kubernetes.kubeconfig/context",
        )
    if s.cloud == "gcp":
        errors.append(f'{NAMESPACE}:cloud ("gcp") is not supported yet; use aws or local')
    if s.cloud == "local" and s.storage.artifact_bucket.enabled:
        err(
            "storage.artifactBucket.enabled",
            True,
            "has no bucket service on cloud local; set it to false",
        )
    if s.cloud != "aws" and s.storage.shared_filesystem.allowed_security_groups:
        err(
            "storage.sharedFilesystem.allowedSecurityGroups",
            list(s.storage.shared_filesystem.allowed_security_groups),
            "applies to cloud aws only",
        )
    if s.cloud != "aws" and s.storage.shared_filesystem.kms_key_arn:
        err(
            "storage.sharedFilesystem.kmsKeyArn",
            s.storage.shared_filesystem.kms_key_arn,
            "applies to cloud aws only",
        )
    if s.operator.namespace == s.kubernetes.namespace:
        err(
            "operator.namespace",
            s.operator.namespace,
            "must differ from kubernetes.namespace (the operator gets its own namespace)",
        )
    return errors


def _runtime_env_errors(s: Settings, base_dir: Path) -> list[str]:
    env = s.ray.runtime_env
    errors: list[str] = []

    def err(key: str, value: object, problem: str) -> None:
        errors.append(_message(f"ray.runtimeEnv.{key}", value, problem))

    for key in sorted(set(env) - RUNTIME_ENV_KEYS):
        err(key, env[key], "is not a runtime_env field Ray knows (check its spelling)")

    pip = env.get("pip")
    packages = pip.get("packages") if isinstance(pip, dict) else pip
    if pip is not None and not (
        isinstance(packages, list) and all(isinstance(p, str) and p.strip() for p in packages)
    ):
        err("pip", pip, "must be a list of requirement strings (or {packages: [...]})")
    env_vars = env.get("env_vars")
    if env_vars is not None and not (
        isinstance(env_vars, dict) and all(isinstance(v, str) for v in env_vars.values())
    ):
        err("env_vars", env_vars, "must map names to strings")
    working_dir = env.get("working_dir")
    if working_dir is not None:
        if not isinstance(working_dir, str) or not working_dir:
            err("working_dir", working_dir, "must be a local directory or a .zip URI")
        elif "://" in working_dir:
            scheme = working_dir.split("://", 1)[0]
            if scheme not in ("s3", "gs", "https"):
                err("working_dir", working_dir, "must use s3://, gs:// or https:// (a .zip)")
            elif not working_dir.endswith(".zip"):
                err("working_dir", working_dir, "must point at a .zip archive")
        else:
            path = (base_dir / working_dir).resolve()
            if not path.is_dir():
                err("working_dir", working_dir, f"is not a directory (resolved to {path.name!r})")
            else:
                try:
                    size = _dir_size(path, WORKING_DIR_LIMIT_BYTES)
                except OSError as os_err:
                    err("working_dir", working_dir, f"cannot be read ({os_err.strerror})")
                    return errors
                if size > WORKING_DIR_LIMIT_BYTES:
                    err(
                        "working_dir",
                        working_dir,
                        "is over Ray's 100 MiB upload limit; zip it into the bucket instead",
                    )
    return errors


def from_pulumi() -> Settings:
    """Load settings for the running Pulumi program (stack config + project dir)."""
    from pulumi.runtime import config as runtime_config

    raw: dict[str, str] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return load(
        raw,
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        base_dir=Path.cwd(),
    )
