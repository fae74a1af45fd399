"""Value types of the settings: quantities, names, images, requirements, paths, label maps.

Each is an `Annotated` type whose validator raises `ValueError` with the problem only; the loader
turns that into the one-line `ray-platform:<key> (<value>) <problem>` message.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import AfterValidator, BeforeValidator, Field

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
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


def semver_tuple(version: str) -> tuple[int, int, int]:
    """`2.52.0-rc1` → (2, 52, 0); the version must already be a valid semver."""
    major, minor, patch = version.split("-")[0].split("+")[0].split(".")
    return int(major), int(minor), int(patch)


def _semver(v: str) -> str:
    if not _SEMVER.match(v):
        raise ValueError("is not a semantic version such as 1.6.1")
    return v


def _number_to_str(v: object) -> object:
    """YAML `cpu: 2` is a number; Kubernetes quantities are strings."""
    if isinstance(v, bool):
        return v
    return str(v) if isinstance(v, int | float) else v


def _quantity(v: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(v) or not re.search(r"[1-9]", v):
        raise ValueError(f"is not {what}")
    return v


def _memory(v: str) -> str:
    _quantity(v, _MEMORY, "a memory quantity such as 8Gi")
    # One reading of quantities: the scheduler's, as components/kuberay/sizing.py counts them
    # (pure).
    from components.kuberay.sizing import memory_bytes

    if memory_bytes(v) < 256 * 2**20:
        raise ValueError("is below 256Mi, too little for a Ray process")
    return v


def dns_label(value: str, what: str = "a Kubernetes name") -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(f"is not valid as {what} (lowercase letters, digits and '-', at most 63)")
    return value


def _namespace(v: str) -> str:
    dns_label(v, "a Kubernetes namespace")
    if v in ("default", "kube-system", "kube-public", "kube-node-lease"):
        raise ValueError("is a namespace Kubernetes owns; choose your own, e.g. ray")
    return v


def _strict_int(v: object) -> object:
    """YAML `true` is not a count."""
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


def _image(v: str) -> str:
    if not _IMAGE.match(v):
        raise ValueError("is not a valid image reference (registry/path:tag[@sha256:…])")
    if v.endswith(":latest") or ":latest@" in v:
        raise ValueError("is not pinned: never ':latest'")
    return v


def _mount_path(v: str) -> str:
    v = v.rstrip("/") or "/"
    if not _PATH.match(v) or "/../" in f"{v}/" or "/./" in f"{v}/" or "//" in v:
        raise ValueError(
            "must be an absolute path of letters, digits, '.', '_', '-' (e.g. /mnt/shared)"
        )
    if v in _RESERVED_DIRS or any(v == t or v.startswith(t + "/") for t in _RESERVED_TREES):
        raise ValueError("would hide or sit inside a directory the image needs; use /mnt/<name>")
    return v


def _key_prefix(v: str) -> str:
    if not _KEY_PREFIX.match(v) or len(v) > 512:
        raise ValueError(
            "is not a key prefix (segments of letters, digits, '.', '_', '-' joined by '/')"
        )
    return v


_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(req: str) -> str | None:
    """The project a pip requirement names, normalized (PEP 503: `Scikit_Learn[x]>=1` →
    `scikit-learn`); None for what names none (a URL, a path, an option). One function for the
    settings' checks (a package named twice, a job's pip naming a shared one) and, mirrored, the
    CLI's (tests/cli keeps the two in agreement)."""
    if "://" in req.split("@", 1)[0] or req.lstrip().startswith(("-", ".", "/")):
        return None
    try:
        return canonicalize_name(Requirement(req).name)
    except InvalidRequirement:
        match = _NAME.match(req)
        return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def is_requirement(req: str) -> bool:
    """A pip requirement the installer may pass on: valid PEP 508 (as pip's own parser,
    `packaging`, reads it: a version such as `==abc` or `~=2` is refused here, not by pip in the
    pod) and within the subset that carries no pip option, marker or shell text."""
    if not _REQUIREMENT.match(req):
        return False
    try:
        Requirement(req)
    except InvalidRequirement:
        return False
    return True


def _package_index(v: str) -> str:
    """A PEP 503 simple index Ray pods install from: http(s), a host, no credentials (they
    would be readable in every pod spec), nothing a pip or uv option could be smuggled in."""
    example = "e.g. http://10.88.0.1:3141/index/"
    if any(c.isspace() or ord(c) < 32 for c in v):
        raise ValueError(f"must be a URL without spaces, {example}")
    try:
        url = urlsplit(v)
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"is not a URL, {example}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"must be an http:// or https:// URL of a PEP 503 simple index, {example}")
    if url.username is not None or url.password is not None:
        raise ValueError(
            "carries credentials, which would be readable in every pod spec: use an index the "
            "cluster's network may read without them"
        )
    if url.query or url.fragment:
        raise ValueError(f"must not have a query or fragment, {example}")
    return v


def index_host(url: str) -> tuple[str, int, bool]:
    """(host, port, host is an IP address) of a validated package index URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host, port, False
    return host, port, True


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


# The JSON Schema of the stack files (infra/settings/schema.py) shows what a stack file may write:
# a quantity as a string or a YAML number (`json_schema_input_type`), a count's bounds (Field
# before the BeforeValidator, so they land on the integer, as `minimum`/`maximum`).
_QUANTITY_INPUT = str | int | float
SemVer = Annotated[str, AfterValidator(_semver)]
CpuQuantity = Annotated[
    str,
    BeforeValidator(_number_to_str, json_schema_input_type=_QUANTITY_INPUT),
    AfterValidator(lambda v: _quantity(v, _CPU, "a CPU quantity such as 500m or 2")),
]
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_number_to_str, json_schema_input_type=_QUANTITY_INPUT),
    AfterValidator(_memory),
]
VolumeSize = Annotated[
    str,
    BeforeValidator(_number_to_str, json_schema_input_type=_QUANTITY_INPUT),
    AfterValidator(lambda v: _quantity(v, _MEMORY, "a storage quantity such as 100Gi")),
]
NamespaceName = Annotated[str, AfterValidator(_namespace)]
Count = Annotated[int, Field(ge=0, le=10_000), BeforeValidator(_strict_int)]
GpuCount = Annotated[int, Field(ge=0, le=64), BeforeValidator(_strict_int)]
Days = Annotated[int, Field(ge=1, le=36_500), BeforeValidator(_strict_int)]
LabelMap = Annotated[dict[str, str], AfterValidator(_label_map)]
ImageRef = Annotated[str, AfterValidator(_image)]
MountPath = Annotated[str, AfterValidator(_mount_path)]
KeyPrefix = Annotated[str, AfterValidator(_key_prefix)]
PackageIndexUrl = Annotated[str, AfterValidator(_package_index)]
