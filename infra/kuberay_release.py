"""The pinned KubeRay release's CRDs, taken from its Go module through the Go module proxy.

The KubeRay operator module (`github.com/ray-project/kuberay/ray-operator@vX`) carries the CRDs in
`config/crd/bases/`. We download the module zip once, check it against the Go checksum database
value recorded here (for the versions we know), and cache it in the user's cache directory. Nothing
from it is committed to this repository.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from infra.cache import cache_root

PINNED_VERSION = "1.6.1"
"""The KubeRay release this program pins, written once: the settings' default `operator.version`
(so the chart's version and the CRDs fetched here), and the operator the local control plane runs
(`tools/versions.json` `pairing.kuberay` and its `kuberay-operator` tool, a Go module the proxy
must serve; tests/unit/test_kuberay_version.py ties them). 1.7.0's module zip is refused by the
proxy reachable here (README, "Building the engine offline")."""

MODULE = "github.com/ray-project/kuberay/ray-operator"
CRD_DIR = "config/crd/bases/"
# go.sum `h1:` hashes (sum.golang.org) of module zips we have checked; others are trusted over TLS.
KNOWN_SUMS = {
    "1.5.1": "h1:7FJYmB8oM+cnjv1VYCj/TfzRZG4XHvvt5Ayn5pZ5A1c=",
    "1.6.1": "h1:IMtV0QW8AxGp4/CbPLd/olXBBxpUNQQr1n4Mu59khl4=",
}


class ReleaseError(RuntimeError):
    """The KubeRay release could not be fetched or is not what was expected."""


def _proxies() -> list[str]:
    raw = os.environ.get("GOPROXY") or "https://proxy.golang.org"
    urls = [p for p in raw.replace("|", ",").split(",") if p.startswith(("http://", "https://"))]
    return urls or ["https://proxy.golang.org"]


def go_h1_sum(zip_bytes: bytes) -> str:
    """Go's dirhash Hash1 of a module zip: the `h1:` value go.sum records."""
    summary = io.StringIO()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        for name in sorted(zf.namelist()):
            digest = hashlib.sha256(zf.read(name)).hexdigest()
            summary.write(f"{digest}  {name}\n")
    return "h1:" + base64.b64encode(hashlib.sha256(summary.getvalue().encode()).digest()).decode()


def module_zip(version: str) -> bytes:
    """The ray-operator module zip for `version` (without the v), from cache or the proxy."""
    path = cache_root() / "kuberay" / f"ray-operator@v{version}.zip"
    if path.is_file():
        return path.read_bytes()
    errors = []
    for proxy in _proxies():
        url = f"{proxy.rstrip('/')}/{MODULE}/@v/v{version}.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                data: bytes = resp.read()
            break
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            errors.append(f"{url}: {err}")
    else:
        raise ReleaseError(
            f"cannot fetch KubeRay v{version} CRDs from the Go module proxy ({'; '.join(errors)})"
        )
    expected = KNOWN_SUMS.get(version)
    if expected is not None and go_h1_sum(data) != expected:
        raise ReleaseError(f"KubeRay v{version} module zip does not match its checksum {expected}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


@cache
def crd_files(version: str) -> list[str]:
    """The release's CRD files, found in the module rather than listed here: releases add kinds
    (1.6 added RayCronJob), and a CRD the operator watches but the cluster lacks stops it."""
    prefix = f"{MODULE}@v{version}/{CRD_DIR}"
    with zipfile.ZipFile(io.BytesIO(module_zip(version))) as zf:
        names = sorted(
            n.removeprefix(prefix)
            for n in zf.namelist()
            if n.startswith(prefix) and n.endswith(".yaml") and "/" not in n.removeprefix(prefix)
        )
    if "ray.io_rayclusters.yaml" not in names:
        raise ReleaseError(f"KubeRay v{version} has no RayCluster CRD in {CRD_DIR}")
    return names


@cache
def crd_yaml(version: str) -> str:
    """Every CRD of the release (RayCluster, RayJob, RayService, ...) as one multi-document YAML."""
    prefix = f"{MODULE}@v{version}/{CRD_DIR}"
    with zipfile.ZipFile(io.BytesIO(module_zip(version))) as zf:
        docs = [zf.read(prefix + name).decode() for name in crd_files(version)]
    return "\n---\n".join(doc.strip().removeprefix("---").strip() for doc in docs) + "\n"


CHART_DIR = ".kuberay-crds"
"""Where the program writes the CRDs' chart, relative to its working directory (the project
directory, which is also the Kubernetes provider's): the Helm release names the chart by this
relative path, so the same CRDs give the same inputs on every machine."""
CHART_NAME = "kuberay-crds"
CHART_FORMAT = "2"
"""How `_chart_files` turns the release's CRDs into a chart; part of the chart's digest, so a
change to it is a new chart version (an upgrade), never a directory reused under an old name.
2: each CRD as compact JSON, Helm's keep policy when the stack retains its CRDs."""
FILES_DIGEST = "ray-platform/templates-sha256"
"""Chart.yaml annotation: the SHA-256 of the templates as written, checked on every run."""
KEEP = {"helm.sh/resource-policy": "keep"}
"""On each CRD of a stack that retains them (prod): Helm never deletes it, neither on uninstall
nor when an upgrade's chart lacks it (an older KubeRay without RayCronJob, a `helm rollback`)."""


def crd_digest(version: str, keep: bool = False) -> str:
    """SHA-256 of what the chart is made from: the release's CRDs (the text `crd_yaml` returns),
    the chart format and the keep policy."""
    recipe = f"format={CHART_FORMAT} keep={keep}\n"
    return hashlib.sha256((recipe + crd_yaml(version)).encode()).hexdigest()


def chart_version(version: str, keep: bool = False) -> str:
    """The CRD chart's SemVer: the KubeRay release, with the chart's digest as build metadata, so
    any change to what it holds is a new chart version (which is what the release diffs)."""
    return f"{version}+crds.{crd_digest(version, keep)[:16]}"


def _templates_digest(templates: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(templates):
        digest.update(f"{name}\0{len(templates[name])}\0{templates[name]}".encode())
    return digest.hexdigest()


def _chart_files(version: str, keep: bool) -> dict[str, str]:
    """The chart, file by file: Chart.yaml and each CRD of the release as a template.

    Compact JSON (the same objects as upstream's YAML, which is valid YAML): Helm stores every
    revision of a release as one Secret holding the rendered manifest *and* the chart's
    templates, gzipped and base64-encoded, and a Secret holds at most 1 MiB. Upstream's 4 MB of
    YAML made a ~630 KB record for KubeRay 1.6.1; as JSON it is well under half that (a unit
    test keeps it under 512 KiB)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 4 MB: libyaml when it is there
    prefix = f"{MODULE}@v{version}/{CRD_DIR}"
    templates = {}
    with zipfile.ZipFile(io.BytesIO(module_zip(version))) as zf:
        for name in crd_files(version):
            docs = [d for d in yaml.load_all(zf.read(prefix + name), Loader=loader) if d]
            if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
                raise ReleaseError(f"KubeRay v{version} {name} is not one CRD")
            crd = docs[0]
            if keep:
                meta = crd.setdefault("metadata", {})
                meta["annotations"] = {**(meta.get("annotations") or {}), **KEEP}
            text = json.dumps(crd, separators=(",", ":"), sort_keys=True) + "\n"
            # Templates go through Helm's template engine: upstream's CRDs hold no actions.
            if "{{" in text:
                raise ReleaseError(f"KubeRay v{version} {name} holds a template action ({{{{)")
            templates[f"templates/{name}"] = text
    chart = {
        "apiVersion": "v2",
        "name": CHART_NAME,
        "description": (
            f"The CRDs of KubeRay v{version} ({MODULE}, {CRD_DIR}) as JSON"
            f"{', kept by Helm' if keep else ''}; written by the ray-platform program."
        ),
        "type": "application",
        "version": chart_version(version, keep),
        "appVersion": version,
        "annotations": {FILES_DIGEST: _templates_digest(templates)},
    }
    return {"Chart.yaml": yaml.safe_dump(chart, sort_keys=False), **templates}


def _intact(chart: Path, version_string: str) -> bool:
    """Whether a chart directory is this chart (name, version) and holds exactly the templates
    its Chart.yaml's digest names (a hand-edited or half-deleted chart is written again, not
    installed)."""
    try:
        meta = yaml.safe_load((chart / "Chart.yaml").read_text()) or {}
        templates = {f"templates/{p.name}": p.read_text() for p in (chart / "templates").iterdir()}
    except (OSError, yaml.YAMLError):
        return False
    if meta.get("name") != CHART_NAME or meta.get("version") != version_string:
        return False
    expected = (meta.get("annotations") or {}).get(FILES_DIGEST)
    return bool(templates) and expected == _templates_digest(templates)


def crd_chart(version: str, keep: bool = False, project_dir: Path | None = None) -> tuple[str, str]:
    """Write (once) a Helm chart holding the release's CRDs under `project_dir` (default: the
    working directory, which Pulumi makes the project directory for the program and the
    provider alike); return its path relative to it (`./.kuberay-crds/<chart version>`) and its
    version. `keep`: Helm's keep policy on each CRD (a stack that retains its CRDs).

    The program installs the CRDs as this chart's Helm release rather than one Pulumi resource
    per CRD: the release's inputs are a path and a version (the digest of the chart), so an
    unchanged run diffs a few strings instead of ~1.2 MB of CRDs, and the state holds no copy of
    them (bench/README.md, issue 18). Written to a temporary directory and renamed into place, so
    concurrent runs never see half a chart; an existing chart is checked against its digest."""
    root = (project_dir or Path.cwd()) / CHART_DIR
    version_string = chart_version(version, keep)
    name = version_string.replace("+", "_")
    target = root / name
    if not _intact(target, version_string):
        files = _chart_files(version, keep)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        stale = None
        try:
            for rel, text in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_text(text)
            tmp.chmod(0o755)  # mkdtemp's 0700 would keep it from other users of the checkout
            # Checked again just before: another run may have put a good chart there meanwhile.
            if target.exists() and not _intact(target, version_string):
                stale = Path(tempfile.mkdtemp(prefix=f".{name}.stale.", dir=root))
                target.rename(stale / name)  # damaged: moved aside whole, then replaced
            tmp.rename(target)
        except OSError:
            if not _intact(target, version_string):  # else another run wrote the same chart
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if stale is not None:  # this run's own, never another's
                shutil.rmtree(stale, ignore_errors=True)
    return f"./{CHART_DIR}/{name}", version_string


@cache
def crd(version: str, plural: str = "rayclusters") -> dict[str, Any]:
    """One CRD object, parsed."""
    for doc in yaml.safe_load_all(crd_yaml(version)):
        if doc and doc["spec"]["names"]["plural"] == plural:
            return dict(doc)
    raise ReleaseError(f"KubeRay v{version} has no CRD for {plural}")


def raycluster_schema(version: str, api_version: str = "v1") -> dict[str, Any]:
    """The `openAPIV3Schema` of the RayCluster CRD at `api_version`."""
    for v in crd(version)["spec"]["versions"]:
        if v["name"] == api_version:
            return dict(v["schema"]["openAPIV3Schema"])
    raise ReleaseError(f"KubeRay v{version} RayCluster CRD has no version {api_version}")


def served_schema(crd: Mapping[str, Any], api_version: str = "v1") -> dict[str, Any] | None:
    """The `openAPIV3Schema` a CRD object (from a release or a live cluster) serves at
    `api_version`, or None when it does not serve that version."""
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == api_version and v.get("served", True):
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            return dict(schema) if isinstance(schema, Mapping) else None
    return None


def missing_fields(schema: Mapping[str, Any], needs: Mapping[str, str | None]) -> list[str]:
    """Of `needs` (dotted path → a value its enum must allow, or None), the paths `schema` does
    not declare (the API server would prune them) or whose enum refuses the value."""
    missing = []
    for dotted, value in needs.items():
        node: Any = schema
        for part in dotted.split("."):
            node = ((node or {}).get("properties") or {}).get(part)
            if node is None:
                break
        enum = node.get("enum") if isinstance(node, Mapping) else None
        if node is None or (value is not None and enum is not None and value not in enum):
            missing.append(dotted if node is None else f"{dotted}={value}")
    return missing
