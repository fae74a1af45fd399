"""Build an application image on a base image by digest, without a container daemon.

    base layers (unchanged, by digest) + packages layer + code layer -> OCI layout -> registry

The packages layer holds what the requirements add to the base (cli/image/resolve.py), at the
base's own site-packages and scripts paths; the code layer holds the context directory (the same
files `submit` would ship: .gitignore honoured, links out refused; cli/package.py) under
`code_dir`, which the image puts first on PYTHONPATH. The config is the base's with those two
layers appended: user, entrypoint, environment and labels of the base carry over.

Deterministic: every layer is written by cli/image/oci.py (sorted entries, fixed mtimes,
normalised modes, owners taken from the base), so the same base digest, requirements file (and
index contents) and code give the same manifest digest on any machine. The tag is the base's
tag (which carries the Ray version, as the stack settings require of `ray.image`) followed by
the manifest digest's first 12 hex digits: a new build never reuses a tag for other content,
which registries with immutable tags (ECR, the stack's Artifact Registry policy) insist on.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli import package
from cli.errors import CliError, Exit
from cli.image import base as base_image
from cli.image import oci, registry, resolve, tools

LAYOUT_TAG = "build"
"""The tag inside the OCI layout; the registry tag is chosen once the digest is known."""
LABEL_PREFIX = "io.ray-platform.image"


@dataclass(frozen=True)
class Request:
    base: base_image.ImageRef
    repository: str
    """host[:port]/path the image is pushed to (the stack's imageRepository)."""
    context: Path
    requirements: Path
    code_dir: str = "/home/ray/app"
    index: resolve.Index = field(default_factory=resolve.Index)
    tls_verify: bool = True
    excludes: Sequence[str] = ()
    tag: str | None = None
    """Overrides the tag `<base tag>-<digest12>`."""


@dataclass(frozen=True)
class Built:
    layout: Path
    digest: str
    tag: str
    repository: str
    packages: int
    files: int

    @property
    def reference(self) -> str:
        """`repository:tag@sha256:…`: what `ray.image` of a prod stack takes."""
        return f"{self.repository}:{self.tag}@{self.digest}"


def _normal_mode(_: str, st: os.stat_result) -> int:
    if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return 0o755 if stat.S_ISDIR(st.st_mode) else 0o777
    return 0o755 if st.st_mode & 0o111 else 0o644


def _layer(root: Path, b: base_image.BaseImage, owner_of: str) -> oci.TreeLayer:
    """A tree whose directories the base already has keep the base's owner and mode (an upper
    layer's directory entry replaces the lower one's); everything new belongs to the owner of
    `owner_of` in the base (the `ray` user's home or site-packages), mode normalised."""
    default = b.dirs.get(owner_of.strip("/")) if owner_of.strip("/") else (0o755, 0, 0)
    if default is None:
        raise CliError(Exit.USAGE, f"base image {b.ref.pinned} has no directory {owner_of}")
    uid, gid = default[1], default[2]

    def owner(path: str, _: os.stat_result) -> tuple[int, int]:
        known = b.dirs.get(path)
        return (known[1], known[2]) if known else (uid, gid)

    def mode(path: str, st: os.stat_result) -> int:
        known = b.dirs.get(path)
        return known[0] if known and stat.S_ISDIR(st.st_mode) else _normal_mode(path, st)

    return oci.TreeLayer(root=root, owner=owner, mode=mode)


def _stage_code(request: Request, stage: Path) -> int:
    files = package.collect(request.context, list(request.excludes))
    if not files:
        raise CliError(Exit.WORKING_DIR, f"the context {request.context} holds no file to bake in")
    dest = stage / request.code_dir.strip("/")
    for rel, src, _ in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)  # a link inside the context ships as its content
        if os.access(src, os.X_OK):
            target.chmod(0o755)
    return len(files)


def _config(b: base_image.BaseImage, request: Request, requirements_sha: str) -> oci.ConfigJson:
    def make(diff_ids: Sequence[str]) -> dict[str, Any]:
        config = copy.deepcopy(b.config)
        runtime = config.setdefault("config", {})
        env = list(runtime.get("Env") or [])
        current = next((e for e in env if e.startswith("PYTHONPATH=")), None)
        pythonpath = request.code_dir
        if current and current.removeprefix("PYTHONPATH="):
            pythonpath += ":" + current.removeprefix("PYTHONPATH=")
        env = [e for e in env if e is not current] + [f"PYTHONPATH={pythonpath}"]
        runtime["Env"] = env
        labels = dict(runtime.get("Labels") or {})
        labels.update(
            {
                "org.opencontainers.image.base.name": b.ref.name
                + (f":{b.ref.tag}" if b.ref.tag else ""),
                "org.opencontainers.image.base.digest": b.ref.digest,
                f"{LABEL_PREFIX}.requirements-sha256": requirements_sha,
                f"{LABEL_PREFIX}.code-dir": request.code_dir,
            }
        )
        runtime["Labels"] = labels
        created = datetime.fromtimestamp(oci.SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        config["created"] = created
        rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *diff_ids]
        # The spec pairs history entries that are not `empty_layer` with the layers, in order: a
        # base whose history does not (the local stand-in writes none) gets one entry per layer.
        history = list(config.get("history") or [])
        base_layers = len(rootfs["diff_ids"]) - len(diff_ids)
        if sum(1 for h in history if not h.get("empty_layer")) != base_layers:
            history = [{"created_by": "(a layer of the base image)"}] * base_layers
        for what in ("packages", "code")[-len(diff_ids) :] if diff_ids else ():
            history.append({"created": created, "created_by": f"ray-platform image build: {what}"})
        config["history"] = history
        return config

    return make


def build(request: Request, cache: Path, log: tools.Log) -> Built:
    registry.check_repository(request.repository, "the image repository")
    if not request.requirements.is_file():
        raise CliError(Exit.USAGE, f"requirements file {request.requirements} does not exist")
    tag = request.tag
    if tag is None and not request.base.tag:
        raise CliError(
            Exit.USAGE,
            f"base image {request.base.pinned} has no tag; the application's tag starts with the "
            "base's (which carries the Ray version): give the base as name:tag@sha256:… or --tag",
        )
    root = cache / "image-build"
    copy_dir = base_image.fetch(request.base, root, tls_verify=request.tls_verify, log=log)
    b = base_image.inspect(request.base, copy_dir)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix="work-"))
    try:
        packages_stage, code_stage = work / "packages", work / "code"
        packages_stage.mkdir()
        code_stage.mkdir()
        resolution = resolve.resolve(b, request.requirements, work, request.index, log)
        installed = resolve.install(b, resolution, packages_stage, work, request.index, log)
        files = _stage_code(request, code_stage)
        log(f"{installed} distributions added to the base's, {files} files of code")
        layers = []
        if installed:
            layers.append(_layer(packages_stage, b, "/" + b.site_packages))
        home = request.code_dir.rsplit("/", 1)[0] or "/"
        layers.append(_layer(code_stage, b, home if home.strip("/") in b.dirs else "/"))
        requirements_sha = hashlib.sha256(request.requirements.read_bytes()).hexdigest()
        result = oci.write_layout(
            work / "layout",
            layers,
            _config(b, request, requirements_sha),
            LAYOUT_TAG,
            base=oci.BaseLayers(blob_dir=b.copy_dir, layers=b.layers),
        )
        # Kept by digest (until the next build of other content replaces it): what was pushed
        # can be pushed again, or read, without rebuilding.
        layout = root / "layouts" / result.digest.removeprefix("sha256:")
        layout.parent.mkdir(parents=True, exist_ok=True)
        try:
            (work / "layout").rename(layout)
        except OSError:  # built before (or by a concurrent build): same digest, same bytes
            if not (layout / "index.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    chosen = tag or f"{request.base.tag}-{result.digest.removeprefix('sha256:')[:12]}"
    if len(chosen) > 128:
        raise CliError(Exit.USAGE, f"the tag {chosen!r} is over 128 characters: give --tag")
    return Built(layout, result.digest, chosen, request.repository, installed, files)


def push(built: Built, *, tls_verify: bool, log: tools.Log) -> str:
    target = f"{built.repository}:{built.tag}"
    log(f"pushing {target} (unless it already holds {built.digest})")
    return registry.push(built.layout, LAYOUT_TAG, target, built.digest, tls_verify=tls_verify)
