"""The Ray stand-in `rayproject/ray:<version>-py311`, built from Debian packages and PyPI wheels.

Faithful where the platform depends on upstream's image (docker/base-deps and docker/ray in
ray-project/ray): user `ray` uid 1000 in group `users` (gid 100), HOME and WORKDIR /home/ray,
`python`, `pip` and `ray` first on PATH from /home/ray/anaconda3/bin, a *prefix* there (not a
virtualenv: `python -m venv --system-site-packages` made from it sees the image's packages, as
with upstream's conda), wget/bash/ca-certificates/procps, ray[default] + boto3 +
smart_open[s3,gcs] + google-cloud-storage, /home/ray/pip-freeze.txt. See tools/README.md for how
it differs.

The prefix: /home/ray/anaconda3/bin/python3.11 is a copy of Debian's interpreter (not a link,
which Python would resolve back to /usr) and lib/python3.11 a copy of its standard library, so
Python's landmark search makes /home/ray/anaconda3 `sys.prefix`. Debian's site.py and sysconfig
then use the `posix_local` scheme for that prefix: packages in
`anaconda3/local/lib/python3.11/dist-packages` (on `sys.path` of the prefix and of every
`--system-site-packages` venv made from it), console scripts in `anaconda3/local/bin` (on PATH
too, and linked into `anaconda3/bin`).

Build (root; about 5 minutes cold): the wheelhouse is downloaded on the host while debootstrap
runs; then apt (with the suite's security updates), the user, the prefix, an offline pip install
from the wheelhouse as uid 1000, byte-compilation with hash-checked (unchecked) pycs, clean-up,
and the OCI layout. Everything is cached in `<cache>/images/` under a key of the inputs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.image import oci
from tools.image import rootfs
from tools.image.common import (
    Image,
    ImageError,
    human_size,
    images_root,
    input_key,
    locked,
    log,
    read_extra,
    read_record,
    run,
    timed,
    write_record,
)

RAY_REPO = "rayproject/ray"
DEFAULT_RAY_VERSION = "2.60.0"
"""The CLI's default: the Ray version Pulumi.local.yaml deploys (a test keeps them in step)."""
RECIPE = "1"
"""Bump when the recipe changes in a way the inputs below do not show (invalidates the cache)."""

PYTHON = "3.11"
PY_TAG = "py311"
UID, GID = 1000, 100
USER = "ray"
HOME = "/home/ray"
PREFIX = f"{HOME}/anaconda3"
LOCAL_BIN = f"{PREFIX}/local/bin"
SITE_PACKAGES = f"{PREFIX}/local/lib/python{PYTHON}/dist-packages"
PATH = f"{PREFIX}/bin:{LOCAL_BIN}:{rootfs.SYSTEM_PATH}"

APT_PACKAGES = (
    f"python{PYTHON}",
    f"python{PYTHON}-venv",  # ensurepip (+ Debian's pip/setuptools wheels) for child venvs
    "python3-distutils",  # the rest of 3.11's stdlib, which Debian packages apart
    "bash",
    "ca-certificates",
    "wget",  # KubeRay's exec probes
    "procps",
    "tzdata",  # upstream sets TZ
    "netbase",  # /etc/services, /etc/protocols
)

EXTRA_REQUIREMENTS = ("boto3", "smart_open[s3,gcs]", "google-cloud-storage")
TOOLING = ("pip", "setuptools", "wheel")

ENV = (
    f"PATH={PATH}",
    f"HOME={HOME}",
    "LANG=C.UTF-8",
    "LC_ALL=C.UTF-8",
    "TZ=America/Los_Angeles",
)

# manylinux tags a wheel may carry to run on bookworm (glibc 2.36), newest first.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)

LOCKS_DIR = Path(__file__).resolve().parent / "locks"

PROFILE_SCRIPT = f"""\
# ray-platform: login shells keep the image's Python first on PATH, as the image's Env has it
# (/etc/profile resets PATH; KubeRay runs `bash -l` when ENABLE_LOGIN_SHELL is set).
case ":$PATH:" in
  *":{PREFIX}/bin:"*) ;;
  *) PATH="{PREFIX}/bin:{LOCAL_BIN}:$PATH"; export PATH ;;
esac
"""

_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc|\.dev|\.post)\d+)?$")
_NETWORK = re.compile(
    r"(NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"Name or service not known|Connection refused|timed out|SSLError|ProxyError|"
    r"Could not fetch URL|Network is unreachable)",
    re.I,
)


def top_level(ray_version: str) -> list[str]:
    return [f"ray[default]=={ray_version}", *EXTRA_REQUIREMENTS, *TOOLING]


def tag_for(ray_version: str) -> str:
    return f"{ray_version}-{PY_TAG}"


def lock_path(ray_version: str) -> Path:
    return LOCKS_DIR / f"ray-{ray_version}-{PY_TAG}.txt"


def check_version(ray_version: str) -> None:
    if not _VERSION.match(ray_version):
        raise ImageError(f"{ray_version!r} is not a Ray release version (like 2.60.0)")


# --------------------------------------------------------------------------- the lock


@dataclass(frozen=True)
class Lock:
    """The exact wheels of an image: `name==version --hash=sha256:...` lines, plus the top-level
    requirements they were resolved from (a `# top-level:` comment)."""

    text: str

    @property
    def top_level(self) -> list[str]:
        for line in self.text.splitlines():
            if line.startswith("# top-level:"):
                return line.removeprefix("# top-level:").split()
        return []

    @property
    def requirements(self) -> list[str]:
        """The pinned lines, comments left out (what the cache keys on)."""
        return sorted(
            line.strip()
            for line in self.text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )

    @property
    def pins(self) -> dict[str, str]:
        out = {}
        for line in self.text.splitlines():
            m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
            if m:
                out[normalize_name(m.group(1))] = m.group(2)
        return out


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5:
        raise ImageError(f"{filename} is not a wheel file name")
    return normalize_name(parts[0]), parts[1]


def render_lock(ray_version: str, wheels: Sequence[Path]) -> str:
    lines = [
        f"# rayproject/ray:{tag_for(ray_version)} stand-in: the wheels installed into the image.",
        f"# Written by `python -m tools.image lock --version {ray_version}` (resolved for",
        f"# CPython {PYTHON}, manylinux x86_64 up to glibc 2.36); re-run it, do not edit by hand.",
        f"# top-level: {' '.join(top_level(ray_version))}",
    ]
    entries = []
    for wheel in wheels:
        name, version = wheel_name_version(wheel.name)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        entries.append((name, f"{name}=={version} --hash=sha256:{digest}"))
    return "\n".join(lines + [line for _, line in sorted(entries)]) + "\n"


def load_lock(ray_version: str) -> Lock | None:
    path = lock_path(ray_version)
    if not path.is_file():
        return None
    lock = Lock(path.read_text(encoding="utf-8"))
    if lock.top_level != top_level(ray_version):
        raise ImageError(
            f"{path.name} was resolved from other requirements than the recipe's; "
            f"re-run: python -m tools.image lock --version {ray_version}"
        )
    return lock


# --------------------------------------------------------------------------- pip on the host


def _host_pip() -> list[str]:
    """A Python with pip (the project's uv virtualenv has none: try its base interpreter and the
    python3 on PATH)."""
    candidates = [sys.executable, getattr(sys, "_base_executable", ""), "python3"]
    candidates += [str(p / "python3") for p in map(Path, os.get_exec_path())]
    seen = set()
    for exe in candidates:
        found = shutil.which(exe) if exe else None
        if not found or found in seen:
            continue
        seen.add(found)
        probe = subprocess.run(
            [found, "-m", "pip", "--version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [found, "-m", "pip"]
    raise ImageError(
        "no Python with pip found to download the image's wheels; "
        "install it with: apt-get update && apt-get install -y python3-pip"
    )


def _pip_env() -> dict[str, str]:
    # The host's pip settings (index, certificate, proxy) apply, but no local find-links: the
    # wheelhouse holds what the index serves and nothing from this machine.
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_NO_INDEX")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def pip_download(args: Sequence[str], dest: Path, log_file: Path) -> None:
    argv = [*_host_pip(), "download", "--dest", str(dest), "--only-binary=:all:"]
    argv += [
        "--python-version",
        PYTHON,
        "--implementation",
        "cp",
        "--abi",
        f"cp{PYTHON.replace('.', '')}",
    ]
    for platform in PLATFORMS:
        argv += ["--platform", platform]
    argv += list(args)
    try:
        run(argv, log_file=log_file, what="pip download", env=_pip_env())
    except ImageError as e:
        text = log_file.read_text(encoding="utf-8", errors="replace")[-20000:]
        if _NETWORK.search(text):
            raise ImageError(f"cannot reach PyPI to download the image's wheels: {e}") from None
        raise


def write_lock(ray_version: str) -> Path:
    """Resolve the image's requirements on PyPI now and write the lock file."""
    check_version(ray_version)
    logs = images_root() / "logs"
    with tempfile.TemporaryDirectory(prefix="ray-lock-") as tmp:
        log(f"resolving {' '.join(top_level(ray_version))} on PyPI")
        pip_download(top_level(ray_version), Path(tmp), logs / f"lock-{ray_version}.log")
        wheels = sorted(Path(tmp).glob("*.whl"))
        text = render_lock(ray_version, wheels)
    path = lock_path(ray_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    log(f"wrote {path.name}: {len(wheels)} wheels")
    return path


def ensure_wheelhouse(ray_version: str, lock: Lock | None) -> Path:
    """The wheels to install, downloaded once per lock (or per requirement list, unpinned)."""
    source = "\n".join(lock.requirements if lock else top_level(ray_version))
    key = input_key({"source": source, "platforms": PLATFORMS, "python": PYTHON})
    target = images_root() / "wheelhouse" / key
    if not (target / ".complete").is_file():
        _download_wheelhouse(ray_version, lock, target, key, source)
    _prune_wheelhouses(target, ray_version)
    return target


def _download_wheelhouse(
    ray_version: str, lock: Lock | None, target: Path, key: str, source: str
) -> None:
    with locked(target.with_suffix(".lock")):
        if (target / ".complete").is_file():
            return
        rootfs.remove_tree(target)
        partial = target.with_name(target.name + ".partial")
        rootfs.remove_tree(partial)
        partial.mkdir(parents=True)
        log_file = images_root() / "logs" / f"wheelhouse-{key}.log"
        if lock is not None:
            req = partial / "requirements.txt"
            req.write_text(lock.text, encoding="utf-8")
            pip_download(["--no-deps", "--require-hashes", "-r", str(req)], partial, log_file)
            req.unlink()
        else:
            log(
                f"no lock for Ray {ray_version} (tools/image/locks/): resolving the newest "
                f"wheels; pin them with: python -m tools.image lock --version {ray_version}"
            )
            pip_download(top_level(ray_version), partial, log_file)
        (partial / ".complete").write_text(source, encoding="utf-8")
        partial.rename(target)


def _prune_wheelhouses(current: Path, ray_version: str) -> None:
    """Delete other wheelhouses of the same Ray version (an older lock)."""
    marks = (f"ray=={ray_version} ", f"ray[default]=={ray_version}")
    for other in sorted(current.parent.iterdir()):
        if other == current or not other.is_dir():
            continue
        try:
            source = (other / ".complete").read_text(encoding="utf-8")
        except OSError:
            continue
        if any(mark in source for mark in marks):
            rootfs.remove_tree(other)
            other.with_suffix(".lock").unlink(missing_ok=True)


# --------------------------------------------------------------------------- inputs and cache


def ray_inputs(ray_version: str, mirrors: rootfs.Mirrors, lock: Lock | None) -> dict[str, Any]:
    """Everything the image is built from; its hash keys the cache."""
    return {
        "recipe": RECIPE,
        "ray_version": ray_version,
        "requirements": lock.requirements if lock else top_level(ray_version),
        "platforms": PLATFORMS,
        "suite": rootfs.SUITE,
        "variant": "minbase",
        "mirrors": [mirrors.main, mirrors.updates, mirrors.security],
        "apt_packages": APT_PACKAGES,
        "user": [USER, UID, GID, HOME, PREFIX],
        "env": ENV,
        "profile": PROFILE_SCRIPT,
        "source_date_epoch": oci.SOURCE_DATE_EPOCH,
    }


def ray_config(ray_version: str) -> oci.ImageConfig:
    return oci.ImageConfig(
        user=str(UID),
        env=ENV,
        working_dir=HOME,
        cmd=("/bin/bash",),
        labels={
            "org.opencontainers.image.title": "rayproject/ray stand-in (ray-platform)",
            "org.opencontainers.image.version": tag_for(ray_version),
            "org.opencontainers.image.description": (
                f"Debian {rootfs.SUITE} + Python {PYTHON} prefix at {PREFIX} with "
                f"ray[default]=={ray_version}, boto3, smart_open[s3,gcs], google-cloud-storage"
            ),
        },
    )


def ray_layer(tree: Path) -> oci.TreeLayer:
    # /dev, /proc and /sys stay as empty mount points: the cached rootfs keeps debootstrap's
    # device nodes so that chroot checks still work in it.
    return oci.TreeLayer(
        tree,
        owner=oci.owner_from_disk,
        exclude_contents=frozenset({"dev", "proc", "sys"}),
    )


def ensure_ray(ray_version: str, *, rebuild: bool = False, repack: bool = False) -> Image:
    """`rayproject/ray:<ray_version>-py311`, built once per inputs (a cached call takes well
    under a second). `repack` writes the layout again from the cached rootfs (a reproducibility
    check: the digest must not change); `rebuild` builds everything again."""
    check_version(ray_version)
    mirrors = rootfs.host_mirrors()
    lock = load_lock(ray_version)
    key = input_key(ray_inputs(ray_version, mirrors, lock))
    directory = images_root() / "ray" / key
    if not (rebuild or repack):
        cached = read_record(directory)
        if cached is not None:
            log(f"{cached.ref} cached ({cached.digest})")
            return cached
    with locked(directory.with_suffix(".lock")):
        if not (rebuild or repack):
            cached = read_record(directory)
            if cached is not None:
                return cached
        previous = read_record(directory)
        timings: dict[str, float] = {}
        tree = directory / "rootfs"
        start = time.monotonic()
        if rebuild or not (directory / "rootfs.complete").is_file():
            rootfs.require_root(f"building {RAY_REPO}:{tag_for(ray_version)}")
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "rootfs.complete").unlink(missing_ok=True)
            _build_rootfs(ray_version, lock, mirrors, directory, timings)
        with timed(timings, "pack", "writing the OCI layout"):
            result = oci.write_layout(
                directory / "layout",
                [ray_layer(tree)],
                ray_config(ray_version),
                tag_for(ray_version),
            )
        image = Image(
            RAY_REPO, tag_for(ray_version), directory / "layout", result.digest, result.size
        )
        timings["total"] = round(time.monotonic() - start, 1)
        extra = read_extra(directory)
        extra.pop("timings_repack", None)
        if "build" in timings or "debootstrap" in timings:
            extra["timings"] = timings
        else:
            extra["timings_repack"] = timings
        stats = result.stats[0]
        extra.update(
            key=key,
            inputs=ray_inputs(ray_version, mirrors, lock),
            layer={
                "files": stats.files,
                "dirs": stats.dirs,
                "symlinks": stats.symlinks,
                "hardlinks": stats.hardlinks,
                "skipped": stats.skipped,
            },
        )
        write_record(directory, image, extra)
        _prune_superseded(directory, image.tag)
    if previous is not None and previous.digest != image.digest:
        log(
            f"the digest changed on {'repack' if repack else 'rebuild'}: "
            f"{previous.digest} -> {image.digest}"
        )
    elif previous is not None:
        log(f"same digest as before ({'repack' if repack else 'rebuild'}): reproducible")
    log(f"{image.ref} {image.digest} ({human_size(image.size)}) in {timings['total']:.0f}s")
    return image


def _prune_superseded(directory: Path, tag: str) -> None:
    """Delete the cached builds of the same tag under other keys (an older recipe or lock):
    about 1.2 GB each, and nothing asks for them any more."""
    for other in sorted(directory.parent.iterdir()):
        if other == directory or not other.is_dir() or other.name.endswith(".partial"):
            continue
        if read_extra(other).get("tag") != tag:
            continue
        with locked(other.with_suffix(".lock")):
            log(f"removing the superseded build {other.name} of {RAY_REPO}:{tag}")
            rootfs.remove_tree(other)
        other.with_suffix(".lock").unlink(missing_ok=True)


# --------------------------------------------------------------------------- the rootfs


def _ray_env() -> dict[str, str]:
    return rootfs.build_env(
        {"PATH": PATH, "HOME": HOME, "PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_INPUT": "1"}
    )


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _build_rootfs(
    ray_version: str,
    lock: Lock | None,
    mirrors: rootfs.Mirrors,
    directory: Path,
    timings: dict[str, float],
) -> None:
    log_file = images_root() / "logs" / f"ray-{directory.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("", encoding="utf-8")
    log(f"building {RAY_REPO}:{tag_for(ray_version)} (log: {log_file})")
    final = directory / "rootfs"
    work = directory / "rootfs.partial"
    if os.path.lexists(work) or os.path.lexists(final):
        with timed(timings, "remove_old", "removing the previous rootfs"):
            rootfs.remove_tree(work)
            rootfs.remove_tree(final)
    build_start = time.monotonic()

    def wheelhouse() -> Path:
        # On the host, while debootstrap and apt run.
        started = time.monotonic()
        path = ensure_wheelhouse(ray_version, lock)
        timings["pip_download"] = round(time.monotonic() - started, 1)
        return path

    with _umask(0o022), concurrent.futures.ThreadPoolExecutor(1) as pool:
        wheels_future = pool.submit(wheelhouse)
        with timed(timings, "debootstrap", f"debootstrap {rootfs.SUITE} (minbase)"):
            rootfs.debootstrap(
                work, mirrors=mirrors, log_file=log_file, cache_dir=images_root() / "debs"
            )
        with rootfs.mounted(work, log_file):
            with timed(timings, "apt", "apt: security updates + " + " ".join(APT_PACKAGES)):
                _apt(work, mirrors, log_file)
            with timed(timings, "prefix", f"user {USER} and the Python prefix {PREFIX}"):
                _user_and_prefix(work, log_file)
            wheels = wheels_future.result()
            with timed(timings, "pip_install", "pip install (offline, as uid 1000)"):
                _pip_install(work, ray_version, wheels, log_file)
            with timed(timings, "compile", "byte-compiling (unchecked-hash pycs)"):
                _compile(work, log_file)
        with timed(timings, "clean", "removing logs, caches and build leftovers"):
            rootfs.clean_rootfs(work)
    timings["build"] = round(time.monotonic() - build_start, 1)
    work.rename(final)
    (directory / "rootfs.complete").write_text(ray_version + "\n", encoding="utf-8")
    rootfs.log_disk_usage(final, "rootfs")


def _apt(work: Path, mirrors: rootfs.Mirrors, log_file: Path) -> None:
    (work / "etc/apt/sources.list").write_text(mirrors.sources_list(), encoding="utf-8")
    # The resolver during the build (removed again by clean_rootfs).
    resolv = work / "etc/resolv.conf"
    if os.path.lexists(resolv):
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    apt = ["apt-get", *rootfs.APT_OPTIONS]
    for argv, what in (
        ([*apt, "update"], "apt-get update"),
        ([*apt, "-y", "dist-upgrade"], "apt-get dist-upgrade"),
        ([*apt, "-y", "install", *APT_PACKAGES], "apt-get install"),
        ([*apt, "clean"], "apt-get clean"),
    ):
        rootfs.in_chroot(work, argv, log_file=log_file, what=what)


def _user_and_prefix(work: Path, log_file: Path) -> None:
    rootfs.in_chroot(
        work,
        [
            "useradd",
            "--create-home",
            "--shell",
            "/bin/bash",
            "--home-dir",
            HOME,
            "--uid",
            str(UID),
            "--gid",
            str(GID),
            USER,
        ],
        log_file=log_file,
        what="useradd ray",
    )
    prefix = work / PREFIX.lstrip("/")
    (prefix / "bin").mkdir(parents=True)
    python = f"python{PYTHON}"
    # A copy, not a link: Python resolves a linked executable to /usr and would take /usr as
    # its prefix.
    shutil.copy2(work / "usr/bin" / python, prefix / "bin" / python)
    for name in ("python3", "python"):
        (prefix / "bin" / name).symlink_to(python)

    def skip(directory: str, names: list[str]) -> set[str]:
        # No EXTERNALLY-MANAGED: this prefix is the image's own Python, which pip may manage
        # (as upstream's conda prefix). Debian's pycs are replaced by ours.
        return {n for n in names if n in ("__pycache__", "EXTERNALLY-MANAGED")}

    shutil.copytree(work / "usr/lib" / python, prefix / "lib" / python, symlinks=True, ignore=skip)
    profile = work / "etc/profile.d/ray-anaconda3.sh"
    profile.write_text(PROFILE_SCRIPT, encoding="utf-8")
    profile.chmod(0o644)
    rootfs.chown_tree(work / HOME.lstrip("/"), UID, GID)


def _pip_install(work: Path, ray_version: str, wheelhouse: Path, log_file: Path) -> None:
    inside = "/tmp/wheelhouse"
    target = work / inside.lstrip("/")
    shutil.copytree(wheelhouse, target, ignore=shutil.ignore_patterns(".complete"))
    for p in [target, *target.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    pip_wheels = sorted(target.glob("pip-*.whl"))
    if not pip_wheels:
        raise ImageError(f"the wheelhouse {wheelhouse} has no pip wheel")
    common = [
        "install",
        "--no-index",
        "--find-links",
        inside,
        "--no-compile",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-warn-script-location",
    ]
    user = (UID, GID)
    env = _ray_env()
    py = f"{PREFIX}/bin/python"
    # pip runs from its own wheel once, to install itself into the prefix.
    rootfs.in_chroot(
        work,
        [py, f"{inside}/{pip_wheels[-1].name}/pip", *common, "pip"],
        log_file=log_file,
        what="pip bootstrap",
        user=user,
        env=env,
    )
    rootfs.in_chroot(
        work,
        [py, "-m", "pip", *common, *top_level(ray_version)],
        log_file=log_file,
        what="pip install",
        user=user,
        env=env,
    )
    rootfs.in_chroot(
        work, [py, "-m", "pip", "check"], log_file=log_file, what="pip check", user=user, env=env
    )
    freeze = rootfs.in_chroot(
        work, [py, "-m", "pip", "freeze"], log_file=log_file, what="pip freeze", user=user, env=env
    )
    freeze_file = work / HOME.lstrip("/") / "pip-freeze.txt"
    freeze_file.write_text(freeze, encoding="utf-8")
    freeze_file.chmod(0o644)
    os.lchown(freeze_file, UID, GID)
    # Console scripts land in local/bin (Debian's posix_local scheme); upstream has them in
    # anaconda3/bin, so link them there too.
    bin_dir = work / PREFIX.lstrip("/") / "bin"
    for script in sorted((work / LOCAL_BIN.lstrip("/")).iterdir()):
        link = bin_dir / script.name
        if not os.path.lexists(link):
            link.symlink_to(f"../local/bin/{script.name}")
            os.lchown(link, UID, GID)
    shutil.rmtree(target)


def _compile(work: Path, log_file: Path) -> None:
    # Hash-based pycs that are never checked against their source: no mtimes inside, so the same
    # bytes on every build, and no stat of the source at import. -f: pip left none, but whatever
    # is there is rewritten rather than trusted.
    proc_out = rootfs.in_chroot(
        work,
        [
            f"{PREFIX}/bin/python",
            "-m",
            "compileall",
            "-q",
            "-f",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            f"{PREFIX}/lib/python{PYTHON}",
            SITE_PACKAGES,
        ],
        log_file=log_file,
        what="compileall",
        user=(UID, GID),
        env=_ray_env(),
        check=False,
    )
    failures = [ln for ln in proc_out.splitlines() if ln.startswith("*** Error compiling")]
    if failures:
        log(f"compileall: {len(failures)} files do not compile (kept as source; see the log)")


# --------------------------------------------------------------------------- checks


def check_script(ray_version: str) -> str:
    """What `check_ray` runs in the image (bash, as uid 1000, the image's Env)."""
    return f"""set -eu
cd {HOME}
echo "== the prefix is sys.prefix, not a venv; ray is in its site-packages"
python - <<'PY'
import sys, site, ray
print(sys.prefix, site.getsitepackages(), ray.__file__)
assert sys.prefix == sys.base_prefix == "{PREFIX}", sys.prefix
assert ray.__file__.startswith("{SITE_PACKAGES}/"), ray.__file__
assert ray.__version__ == "{ray_version}", ray.__version__
PY
echo "== tools on PATH, in a login shell too"
command -v python pip ray wget bash ps
test "$(bash -lc 'command -v ray')" = "{PREFIX}/bin/ray"
echo "== a child venv with --system-site-packages sees the image's packages"
python -m venv --system-site-packages /tmp/check-venv
/tmp/check-venv/bin/python -c 'import ray, sys; print(sys.prefix, ray.__file__)'
/tmp/check-venv/bin/pip --version
/tmp/check-venv/bin/pip install --no-index --find-links /tmp/check-wheels --no-cache-dir \\
  --disable-pip-version-check tabulate requests-toolbelt
echo "== the shared-packages installer's flow: venv --without-pip, the image's pip, only what"
echo "   the image lacks (tabulate, requests-toolbelt; requests comes from the image)"
mkdir /tmp/check-shared
python -m pip list --disable-pip-version-check --format=freeze | grep -v '+' \\
  > /tmp/check-shared/image-packages.txt
python -m venv --without-pip --system-site-packages /tmp/check-shared/venv
/tmp/check-shared/venv/bin/python -m pip install --no-index --find-links /tmp/check-wheels \\
  --no-cache-dir --disable-pip-version-check -c /tmp/check-shared/image-packages.txt \\
  tabulate==0.9.0 requests-toolbelt
installed=$(cd /tmp/check-shared/venv/lib/python{PYTHON}/site-packages && ls | tr '\\n' ' ')
echo "installed: $installed"
want="requests_toolbelt requests_toolbelt-1.0.0.dist-info tabulate tabulate-0.9.0.dist-info "
test "$installed" = "$want"
echo "== Ray runs: a head node, a task, KubeRay's probe commands"
trap 'ray stop --force >/dev/null 2>&1 || true' EXIT
ray start --head --num-cpus=1 --disable-usage-stats --dashboard-host=127.0.0.1 >/dev/null
python -c 'import ray; ray.init(address="auto", logging_level="ERROR"); \\
print("task:", ray.get(ray.remote(lambda: 6 * 7).remote()))'
for i in $(seq 30); do
  if wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep -q success \\
    && wget --tries 1 -T 2 -q -O- http://localhost:8265/api/gcs_healthz | grep -q success; then
    echo "probes: success"; break
  fi
  test "$i" -lt 30 && sleep 1 || {{ echo "probes failed"; exit 1; }}
done
ray health-check && echo "ray health-check: ok"
"""


def check_ray(ray_version: str) -> str:
    """Run `check_script` as uid 1000, with the image's Env, on a throwaway overlay of a built
    image's cached rootfs (root; the wheels tabulate and requests-toolbelt come from PyPI, once).
    Returns its output; ImageError when a check fails. The cached rootfs is not touched."""
    rootfs.require_root("checking the Ray rootfs")
    check_version(ray_version)
    key = input_key(ray_inputs(ray_version, rootfs.host_mirrors(), load_lock(ray_version)))
    directory = images_root() / "ray" / key
    if not (directory / "rootfs.complete").is_file():
        raise ImageError(f"no built rootfs for Ray {ray_version}; run: python -m tools.image ray")
    log_file = images_root() / "logs" / f"check-{key}.log"
    wheels = images_root() / "check-wheels"
    if not (wheels / ".complete").is_file():
        wheels.mkdir(parents=True, exist_ok=True)
        pip_download(["--no-deps", "tabulate==0.9.0", "requests-toolbelt==1.0.0"], wheels, log_file)
        (wheels / ".complete").write_text("", encoding="utf-8")
    env = dict(e.split("=", 1) for e in ENV)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    scratch = images_root() / "check" / f"{key}-{os.getpid()}"
    with rootfs.overlay(directory / "rootfs", scratch, log_file) as tree:
        inside = tree / "tmp/check-wheels"
        shutil.copytree(wheels, inside, ignore=shutil.ignore_patterns(".complete"))
        for p in [inside, *inside.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        with rootfs.mounted(tree, log_file):
            return rootfs.in_chroot(
                tree,
                ["/bin/bash", "-c", check_script(ray_version)],
                log_file=log_file,
                what="the image check",
                user=(UID, GID),
                env=env,
                # Ray's `uv run` detection walks the driver's parent processes: with the host's
                # PIDs visible it would find the `uv run` this check may be started from.
                own_pids=True,
            )
