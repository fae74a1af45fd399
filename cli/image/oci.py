"""Deterministic OCI image layouts from directory trees, with the standard library only.

Same tree and config in, same bytes out, whenever and wherever it runs:

- a layer is an uncompressed tar (`application/vnd.oci.image.layer.v1.tar`, which containerd and
  the registry accept as is) of one directory tree: entries depth-first in byte order of their
  names, every mtime `SOURCE_DATE_EPOCH`, numeric uid/gid from an owner policy (no user or group
  names), permission bits (setuid/setgid/sticky included) from disk, symlinks as symlinks,
  hard links as hard links to the first name in that order; devices, FIFOs and sockets are left
  out (the runtime provides /dev), and so are extended attributes (file capabilities) and ACLs;
- tar headers are POSIX/PAX: a PAX record appears only where ustar cannot hold a field (a long
  or non-ASCII name), and it carries no time or process-dependent field;
- config, manifest and index are canonical JSON (sorted keys, no whitespace).

The digest of the manifest therefore names the image's content: building twice from the same tree
gives the same digest, and a tree that differs only in mtimes or (with a fixed owner policy) in
owners gives the same digest too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

SOURCE_DATE_EPOCH = 1747699200
"""2025-05-20T00:00:00Z (the Debian snapshot the host's apt sources name): every mtime in every
layer, the image's `created`, and the clock debootstrap and useradd see."""

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# A base image pulled from Docker Hub is usually a Docker schema 2 manifest; its layers are the
# same bytes under Docker's media types, so an OCI manifest can name them with OCI's.
LAYER_MEDIA_TYPES = {
    MEDIA_LAYER: MEDIA_LAYER,
    MEDIA_LAYER_GZIP: MEDIA_LAYER_GZIP,
    MEDIA_LAYER_ZSTD: MEDIA_LAYER_ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar": MEDIA_LAYER,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": MEDIA_LAYER_GZIP,
}
REF_NAME = "org.opencontainers.image.ref.name"

Owner = Callable[[str, os.stat_result], tuple[int, int]]
"""(path inside the layer, lstat of the file on disk) -> (uid, gid) written to the tar."""


def owner_from_disk(_: str, st: os.stat_result) -> tuple[int, int]:
    """Keep the numeric owner the file has on disk (a rootfs built as root, where dpkg and the
    recipe set every owner)."""
    return st.st_uid, st.st_gid


def fixed_owner(
    uid: int = 0, gid: int = 0, overrides: Mapping[str, tuple[int, int]] | None = None
) -> Owner:
    """Everything `uid:gid`, except paths at or under an override's prefix (longest wins)."""
    rules = sorted((overrides or {}).items(), key=lambda kv: len(kv[0]), reverse=True)

    def owner(path: str, _: os.stat_result) -> tuple[int, int]:
        for prefix, ids in rules:
            p = prefix.strip("/")
            if path == p or path.startswith(p + "/"):
                return ids
        return uid, gid

    return owner


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


Mode = Callable[[str, os.stat_result], int]
"""(path inside the layer, lstat of the file on disk) -> permission bits written to the tar."""


def mode_from_disk(_: str, st: os.stat_result) -> int:
    return stat.S_IMODE(st.st_mode)


@dataclass(frozen=True)
class TreeLayer:
    """One layer: the tree under `root` (paths below are relative to it). `exclude` drops an entry
    and, for a directory, everything under it; `exclude_contents` keeps a directory's own entry
    but nothing under it (`dev` gives an empty /dev)."""

    root: Path
    owner: Owner = owner_from_disk
    exclude_contents: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    mode: Mode = mode_from_disk
    """A rootfs keeps the modes dpkg gave; an application layer normalises them (a umask must
    not change the digest)."""


@dataclass(frozen=True)
class BaseLayers:
    """Layers taken unchanged from another image (the one an application image is built on):
    their blobs in `blob_dir`, each file named by its digest's hex part (skopeo's `dir:`
    layout), with the descriptors the base's manifest gives them."""

    blob_dir: Path
    layers: tuple[Blob, ...]


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of the image config (`config` in the OCI image config)."""

    user: str = ""
    env: Sequence[str] = ()
    working_dir: str = ""
    cmd: Sequence[str] = ()
    entrypoint: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    os: str = "linux"

    def to_json(self, diff_ids: Sequence[str]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.user:
            config["User"] = self.user
        if self.env:
            config["Env"] = list(self.env)
        if self.working_dir:
            config["WorkingDir"] = self.working_dir
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.labels:
            config["Labels"] = dict(self.labels)
        created = datetime.fromtimestamp(SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "architecture": self.architecture,
            "os": self.os,
            "created": created,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        }


@dataclass(frozen=True)
class LayerStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    skipped: int = 0


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------- the tree


def walk(layer: TreeLayer) -> Iterator[tuple[str, Path, os.stat_result]]:
    """(name in the layer, path on disk, lstat) depth-first, children in byte order of their
    names; the root itself is not an entry."""

    def children(directory: Path, prefix: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        names = sorted(os.listdir(directory), key=os.fsencode)
        for name in names:
            rel = f"{prefix}{name}"
            if rel in layer.exclude:
                continue
            path = directory / name
            st = path.lstat()
            yield rel, path, st
            if stat.S_ISDIR(st.st_mode) and rel not in layer.exclude_contents:
                yield from children(path, rel + "/")

    yield from children(layer.root, "")


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def write_layer_tar(layer: TreeLayer, out: BinaryIO) -> tuple[str, int, LayerStats]:
    """Write `layer` as a tar to `out`; returns ("sha256:<hex>", size, stats)."""
    writer = _HashingWriter(out)
    first_name: dict[tuple[int, int], str] = {}
    files = dirs = symlinks = hardlinks = skipped = 0
    with tarfile.open(
        fileobj=cast(BinaryIO, writer),  # write-only is all "w|" needs
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        for name, path, st in walk(layer):
            info = tarfile.TarInfo(name)
            info.mtime = SOURCE_DATE_EPOCH
            info.mode = layer.mode(name, st)
            info.uid, info.gid = layer.owner(name, st)
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                dirs += 1
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
                symlinks += 1
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in first_name:
                    info.type = tarfile.LNKTYPE
                    info.linkname = first_name[key]
                    tar.addfile(info)
                    hardlinks += 1
                    continue
                if st.st_nlink > 1:
                    first_name[key] = name
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                files += 1
            else:
                skipped += 1  # character/block devices, FIFOs, sockets
    digest = "sha256:" + writer.sha256.hexdigest()
    return digest, writer.size, LayerStats(files, dirs, symlinks, hardlinks, skipped)


# --------------------------------------------------------------------------- the layout


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def put_bytes(self, data: bytes, media_type: str) -> Blob:
        hexdigest = hashlib.sha256(data).hexdigest()
        target = self.blobs / hexdigest
        if not target.exists():
            tmp = target.with_name(f".{hexdigest}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return Blob("sha256:" + hexdigest, len(data), media_type)

    def put_existing(self, source: Path, blob: Blob) -> Blob:
        """A blob of another layout or `dir:` copy, linked in (copied across file systems);
        its digest is checked on the way, so a corrupt cache is never pushed."""
        target = self.blobs / blob.digest.removeprefix("sha256:")
        if not target.exists():
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            tmp.replace(target)
        if _file_digest(target) != blob.digest:
            target.unlink()
            raise ValueError(f"{source} does not match its digest {blob.digest}")
        return blob

    def put_layer(self, layer: TreeLayer) -> tuple[Blob, LayerStats]:
        fd, tmp_name = tempfile.mkstemp(dir=self.blobs, prefix=".layer-", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                digest, size, stats = write_layer_tar(layer, f)
            tmp.chmod(0o644)
            tmp.replace(self.blobs / digest.removeprefix("sha256:"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Blob(digest, size, MEDIA_LAYER), stats


@dataclass(frozen=True)
class LayoutResult:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    stats: tuple[LayerStats, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def size(self) -> int:
        """Bytes a registry stores for the image (layers + config + manifest)."""
        return self.manifest.size + self.config.size + sum(b.size for b in self.layers)


ConfigJson = Callable[[Sequence[str]], dict[str, Any]]
"""The diff_ids of the layers written here -> the image config (an application image's: the
base's config with those appended)."""


def write_layout(
    dest: Path,
    layers: Sequence[TreeLayer],
    config: ImageConfig | ConfigJson,
    tag: str,
    annotations: Mapping[str, str] | None = None,
    base: BaseLayers | None = None,
) -> LayoutResult:
    """Write an OCI image layout at `dest` (replaced if it exists; written beside it first and
    renamed, so `dest` is always either absent, the old layout or the complete new one) holding
    one image tagged `tag` (the index entry's `org.opencontainers.image.ref.name`, which
    `skopeo ... oci:<dest>:<tag>` selects). `base`'s layers come first, as they are."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        layout = _Layout(work)
        inherited = []
        for b in base.layers if base else ():
            assert base is not None
            inherited.append(
                layout.put_existing(base.blob_dir / b.digest.removeprefix("sha256:"), b)
            )
        blobs: list[Blob] = []
        stats: list[LayerStats] = []
        for layer in layers:
            blob, layer_stats = layout.put_layer(layer)
            blobs.append(blob)
            stats.append(layer_stats)
        # Uncompressed layers: each layer's digest is also its diff_id.
        diff_ids = [b.digest for b in blobs]
        config_json = (
            config.to_json(diff_ids) if isinstance(config, ImageConfig) else config(diff_ids)
        )
        config_blob = layout.put_bytes(canonical_json(config_json), MEDIA_CONFIG)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [b.descriptor() for b in (*inherited, *blobs)],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        manifest_blob = layout.put_bytes(canonical_json(manifest), MEDIA_MANIFEST)
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    **manifest_blob.descriptor(),
                    "platform": {
                        "architecture": config_json.get("architecture", "amd64"),
                        "os": config_json.get("os", "linux"),
                    },
                    "annotations": {REF_NAME: tag},
                }
            ],
        }
        (work / "index.json").write_bytes(canonical_json(index))
        (work / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        old: Path | None = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
        work.rename(dest)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return LayoutResult(manifest_blob, config_blob, (*inherited, *blobs), tuple(stats))


def read_layout(layout: Path, tag: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(manifest digest, manifest, config) of the image tagged `tag` in a layout; ValueError if
    the layout does not hold it or a blob does not match its digest."""
    index = json.loads((layout / "index.json").read_bytes())
    for entry in index.get("manifests", []):
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            manifest_bytes = _read_blob(layout, entry["digest"])
            manifest = json.loads(manifest_bytes)
            config = json.loads(_read_blob(layout, manifest["config"]["digest"]))
            return entry["digest"], manifest, config
    raise ValueError(f"{layout} holds no image tagged {tag!r}")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _read_blob(layout: Path, digest: str) -> bytes:
    algo, _, hexdigest = digest.partition(":")
    data = (layout / "blobs" / algo / hexdigest).read_bytes()
    if hashlib.sha256(data).hexdigest() != hexdigest:
        raise ValueError(f"blob {digest} in {layout} does not match its digest")
    return data
