"""The base image an application image is built on: fetched by digest, read without running it.

`fetch` copies `repo[:tag]@sha256:…` from its registry with skopeo into a `dir:` copy in the
cache (manifest and blobs byte for byte, so the manifest's digest is checked against the pin);
a multi-platform index is resolved to the linux/<arch> image first. `inspect` then reads what a
build needs from the layers' tar streams, in order, honouring whiteouts:

- where Python packages live: the `site-packages`/`dist-packages` directory holding `ray/`
  (upstream's images: /home/ray/anaconda3/lib/python3.X/site-packages; this project's
  stand-in: Debian's `local` scheme under the same prefix), which also gives the Python version;
- the interpreter scripts must name (`<prefix>/bin/pythonX.Y`) and where scripts go;
- `/home/ray/pip-freeze.txt` (upstream writes it in docker/ray's Dockerfile): what the base pins;
- the glibc version (from dpkg's status file), for the manylinux tag wheels must carry;
- the owner and mode of every directory, so a new layer's parent directories repeat them
  instead of overriding them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from cli.errors import CliError, Exit
from cli.image import oci, tools

PINNED = "pinned-manifest.json"
"""In a `dir:` copy: the manifest (or index) the pin names, as the registry served it."""
FREEZE_PATH = "home/ray/pip-freeze.txt"
DPKG_STATUS = "var/lib/dpkg/status"
_MANIFEST_LIST = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_MANIFESTS = (
    oci.MEDIA_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
)
_SITE = re.compile(r"^(?P<prefix>.+?)/(?:local/)?lib/python(?P<py>3\.\d+)/(?:site|dist)-packages$")
_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class ImageRef:
    """`registry/repo[:tag]@sha256:<hex>`, split."""

    name: str
    tag: str | None
    digest: str

    @property
    def pinned(self) -> str:
        return f"{self.name}@{self.digest}"

    @classmethod
    def parse(cls, text: str, what: str) -> ImageRef:
        m = re.fullmatch(
            r"(?P<name>[a-z0-9][a-z0-9._/:\[\]-]*?)(?::(?P<tag>[\w][\w.-]{0,127}))?"
            r"@(?P<digest>sha256:[0-9a-f]{64})",
            text.strip(),
        )
        if not m:
            raise CliError(
                Exit.USAGE,
                f"{what} {text!r} is not pinned by digest (want name[:tag]@sha256:<64 hex>)",
            )
        return cls(m["name"], m["tag"], m["digest"])


@dataclass
class BaseImage:
    """What a build needs to know of the base (see the module's text)."""

    ref: ImageRef
    copy_dir: Path
    """skopeo's `dir:` copy: `manifest.json` and one file per blob, named by its hex digest."""
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: tuple[oci.Blob, ...]
    site_packages: str
    """Without a leading slash, e.g. home/ray/anaconda3/lib/python3.11/site-packages."""
    python_version: str
    interpreter: str
    """Absolute, e.g. /home/ray/anaconda3/bin/python3.11: the shebang of installed scripts."""
    scripts_dir: str
    """Without a leading slash: where console scripts go (the scheme's bin)."""
    freeze: dict[str, str | None]
    """Canonical project name -> pinned version (None: installed from a URL or path)."""
    installed: dict[str, str]
    """Canonical project name -> version, from the `*.dist-info` directories in site_packages
    (what is really there; it also names the version of what pip-freeze lists as a URL)."""
    glibc: tuple[int, int] | None
    architecture: str
    dirs: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Directory (no leading slash) -> (mode, uid, gid), as the base's last layer leaves it."""

    @property
    def python_platform(self) -> str:
        """uv's --python-platform: the newest manylinux the base's glibc runs."""
        arch = _ARCH.get(self.architecture)
        if arch is None:
            raise CliError(
                Exit.USAGE,
                f"base image {self.ref.pinned} is for {self.architecture!r}; "
                f"wheels can be chosen for {', '.join(_ARCH)}",
            )
        major, minor = self.glibc or (2, 17)
        # uv knows manylinux_2_17 .. manylinux_2_40; an older glibc has no manylinux wheels.
        return f"{arch}-manylinux_{major}_{max(17, min(minor, 40))}"


def canonical_name(name: str) -> str:
    """PEP 503 normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(text: str) -> dict[str, str | None]:
    pins: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if m := re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line):
            pins[canonical_name(m[1])] = m[2]
        elif m := re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*@\s*\S+", line):
            pins[canonical_name(m[1])] = None
    return pins


def _glibc(dpkg_status: str) -> tuple[int, int] | None:
    for stanza in dpkg_status.split("\n\n"):
        if re.search(r"^Package: libc6$", stanza, re.M):
            m = re.search(r"^Version: (?:\d+:)?(\d+)\.(\d+)", stanza, re.M)
            if m:
                return int(m[1]), int(m[2])
    return None


def fetch(ref: ImageRef, cache: Path, *, tls_verify: bool, log: tools.Log) -> Path:
    """The base's `dir:` copy in the cache (fetched once per digest; a half-done copy is never
    used: it is written beside and renamed)."""
    target = cache / "bases" / ref.digest.removeprefix("sha256:")
    if (target / "manifest.json").is_file():
        return target
    skopeo = tools.require("skopeo", "it reads and copies images in registries")
    verify = "true" if tls_verify else "false"
    # Bytes, not text: the digest is of the bytes the registry serves.
    raw = tools.run_bytes(
        [skopeo, "inspect", "--raw", "--retry-times", "3", f"--tls-verify={verify}",
         f"docker://{ref.pinned}"],
        what=f"reading the base image {ref.pinned}",
        code=Exit.REGISTRY,
    )  # fmt: skip
    if "sha256:" + hashlib.sha256(raw).hexdigest() != ref.digest:
        raise CliError(
            Exit.REGISTRY,
            f"the registry served a manifest for {ref.pinned} whose digest is not {ref.digest}",
        )
    top = json.loads(raw)
    source = ref.pinned
    if top.get("mediaType") in _MANIFEST_LIST or "manifests" in top:
        arch = "amd64"
        chosen = [
            m
            for m in top.get("manifests", [])
            if m.get("platform", {}).get("os") == "linux"
            and m.get("platform", {}).get("architecture") == arch
        ]
        if not chosen:
            raise CliError(Exit.REGISTRY, f"base image {ref.pinned} has no linux/{arch} image")
        source = f"{ref.name}@{chosen[0]['digest']}"
    log(f"fetching the base image {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # One temporary copy per process: two builds fetching the same base never share one.
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    work.rmdir()  # skopeo's dir: wants to create it
    try:
        _copy(skopeo, source, work, verify)
        (work / PINNED).write_bytes(raw)
        try:
            work.rename(target)
        except OSError:  # another build got there first: theirs is as good (checked on use)
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _copy(skopeo: str, source: str, work: Path, verify: str) -> None:
    tools.run(
        [skopeo, "--insecure-policy", "copy", "--quiet", "--retry-times", "3",
         "--preserve-digests", f"--src-tls-verify={verify}", f"docker://{source}",
         f"dir:{work}"],
        what=f"copying the base image {source}",
        code=Exit.REGISTRY,
    )  # fmt: skip


def _open_layer(path: Path, media_type: str) -> IO[bytes]:
    if media_type == oci.MEDIA_LAYER_ZSTD:
        raise CliError(
            Exit.USAGE,
            f"a layer of the base image is zstd-compressed ({path.name}); this build reads "
            "tar and gzip layers only",
        )
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller's with-block
    magic = f.read(2)
    f.seek(0)
    return cast(IO[bytes], gzip.GzipFile(fileobj=f)) if magic == b"\x1f\x8b" else f


def _entries(
    copy_dir: Path, layers: tuple[oci.Blob, ...]
) -> Iterator[tuple[tarfile.TarInfo, str, str | None]]:
    """(member, normalised name, text of the files read here) of every layer, in order: one
    streaming pass, so a multi-GB base is never unpacked."""
    for blob in layers:
        with (
            _open_layer(copy_dir / blob.digest.removeprefix("sha256:"), blob.media_type) as f,
            tarfile.open(fileobj=f, mode="r|") as tar,
        ):
            for member in tar:
                name = _norm(member.name)
                text = None
                if member.isfile() and name in (FREEZE_PATH, DPKG_STATUS):
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    text = extracted.read().decode("utf-8", "replace")
                yield member, name, text


def _norm(name: str) -> str:
    return re.sub(r"^(\./|/)+", "", name).rstrip("/")


def _check_copy(ref: ImageRef, copy_dir: Path) -> dict[str, Any]:
    """The copy's manifest, once it is shown to be the pinned one (or, for an index, one the
    pinned index lists): a cache edited or half-written is never built on."""
    try:
        pinned = (copy_dir / PINNED).read_bytes()
        raw = (copy_dir / "manifest.json").read_bytes()
    except OSError as e:
        raise CliError(
            Exit.REGISTRY, f"the cached copy of {ref.pinned} is incomplete: {e}"
        ) from None
    ok = "sha256:" + hashlib.sha256(pinned).hexdigest() == ref.digest
    own = "sha256:" + hashlib.sha256(raw).hexdigest()
    if ok and own != ref.digest:
        listed = {m.get("digest") for m in json.loads(pinned).get("manifests", [])}
        ok = own in listed
    if not ok:
        raise CliError(
            Exit.REGISTRY,
            f"the cached copy of {ref.pinned} in {copy_dir} does not match the digest; "
            "delete that directory and build again",
        )
    manifest: dict[str, Any] = json.loads(raw)
    for d in [manifest.get("config", {}), *manifest.get("layers", [])]:
        blob = copy_dir / str(d.get("digest", "")).removeprefix("sha256:")
        if not blob.is_file() or blob.stat().st_size != d.get("size"):
            raise CliError(
                Exit.REGISTRY,
                f"the cached copy of {ref.pinned} in {copy_dir} lacks {d.get('digest')} or has "
                "it cut short; delete that directory and build again",
            )
    return manifest


def inspect(ref: ImageRef, copy_dir: Path) -> BaseImage:
    manifest = _check_copy(ref, copy_dir)
    if manifest.get("mediaType", oci.MEDIA_MANIFEST) not in _MANIFESTS:
        raise CliError(Exit.USAGE, f"base image {ref.pinned}: unsupported manifest type")
    layers: list[oci.Blob] = []
    for d in manifest["layers"]:
        media = oci.LAYER_MEDIA_TYPES.get(d["mediaType"])
        if media is None:
            raise CliError(
                Exit.USAGE,
                f"base image {ref.pinned}: layer media type {d['mediaType']!r} is not one this "
                "build can carry over (foreign or non-distributable layers are not)",
            )
        layers.append(oci.Blob(d["digest"], d["size"], media))
    config_digest = manifest["config"]["digest"]
    config = json.loads((copy_dir / config_digest.removeprefix("sha256:")).read_bytes())

    files: dict[str, str] = {}  # name -> kind, for the paths a build looks for
    contents: dict[str, str] = {}
    dirs: dict[str, tuple[int, int, int]] = {}
    for item, name, text in _entries(copy_dir, tuple(layers)):
        base, _, leaf = name.rpartition("/")
        if leaf.startswith(".wh."):
            gone = f"{base}/{leaf[4:]}" if base else leaf[4:]
            if leaf == ".wh..wh..opq":  # the directory stays, what lower layers had in it goes
                gone = base
                dirs = {k: v for k, v in dirs.items() if not k.startswith(gone + "/")}
            else:
                dirs = {k: v for k, v in dirs.items() if k != gone and not k.startswith(gone + "/")}
            for table in (files, contents):
                for key in [k for k in table if k == gone or k.startswith(gone + "/")]:
                    del table[key]
            continue
        if item.isdir():
            dirs[name] = (item.mode & 0o7777, item.uid, item.gid)
        elif re.search(r"(site|dist)-packages/ray/__init__\.py$", name) or re.search(
            r"/bin/python3\.\d+$", name
        ):
            files[name] = "file"
        if text is not None:
            contents[name] = text

    sites = sorted(
        n.removesuffix("/ray/__init__.py") for n in files if n.endswith("/ray/__init__.py")
    )
    if len(sites) != 1 or not (m := _SITE.match(sites[0])):
        found = ", ".join(sites) or "none"
        raise CliError(
            Exit.USAGE,
            f"base image {ref.pinned}: expected one Python site-packages holding Ray, found "
            f"{found} (is it a rayproject/ray image?)",
        )
    site = sites[0]
    prefix, py = m["prefix"], m["py"]
    interpreter = f"{prefix}/bin/python{py}"
    if interpreter not in files:
        raise CliError(Exit.USAGE, f"base image {ref.pinned}: no /{interpreter} beside /{site}")
    installed: dict[str, str] = {}
    for n in dirs:
        if (
            n.startswith(site + "/")
            and n.endswith(".dist-info")
            and n.count("/") == site.count("/") + 1
        ):
            stem = n.rsplit("/", 1)[1].removesuffix(".dist-info")
            project, _, version = stem.rpartition("-")
            if project:
                installed[canonical_name(project)] = version
    scheme_root = site.split("/lib/python", 1)[0]  # the `local` scheme has its own bin
    if FREEZE_PATH not in contents:
        raise CliError(
            Exit.USAGE,
            f"base image {ref.pinned} has no /{FREEZE_PATH} (rayproject/ray images write it): "
            "without it the build cannot know what the base pins",
        )
    return BaseImage(
        ref=ref,
        copy_dir=copy_dir,
        manifest=manifest,
        config=config,
        layers=tuple(layers),
        site_packages=site,
        python_version=py,
        interpreter="/" + interpreter,
        scripts_dir=f"{scheme_root}/bin",
        freeze=parse_freeze(contents[FREEZE_PATH]),
        installed=installed,
        glibc=_glibc(contents.get(DPKG_STATUS, "")),
        architecture=str(config.get("architecture", "amd64")),
        dirs=dirs,
    )
