"""Root file systems from Debian packages: the host's apt sources, debootstrap, commands in a
chroot, and the clean-up that makes a rootfs reproducible. Needs root (debootstrap, chroot,
mount)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cli.image import oci
from tools.image.common import ImageError, log, require_tool, run

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The host's sources are a dated snapshot: their Release files are past Valid-Until.
APT_OPTIONS = (
    "-o",
    "Acquire::Check-Valid-Until=false",
    "-o",
    "Acquire::Languages=none",
    "-o",
    "APT::Install-Recommends=false",
    "-o",
    "APT::Install-Suggests=false",
    "-o",
    "Dpkg::Use-Pty=0",
    "-q",
)


@dataclass(frozen=True)
class Mirrors:
    """Where the Debian packages come from: the host's own apt sources for the suite."""

    main: str = DEFAULT_MIRROR
    updates: str | None = DEFAULT_MIRROR
    security: str | None = DEFAULT_SECURITY

    def sources_list(self, suite: str = SUITE) -> str:
        lines = [f"deb {self.main} {suite} main"]
        if self.updates:
            lines.append(f"deb {self.updates} {suite}-updates main")
        if self.security:
            lines.append(f"deb {self.security} {suite}-security main")
        return "\n".join(lines) + "\n"


def _deb822_entries(text: str) -> Iterator[tuple[str, str]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield uri.rstrip("/"), suite


def _one_line_entries(text: str) -> Iterator[tuple[str, str]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)
        parts = line.split()
        if len(parts) >= 3:
            yield parts[1].rstrip("/"), parts[2]


def host_mirrors(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> Mirrors:
    """The URIs the host's apt uses for `suite`, `-updates` and `-security` (deb822 `.sources`
    and one-line `.list` files; disabled files and stanzas are ignored); Debian's defaults where
    the host names none (e.g. not a Debian host)."""
    entries: list[tuple[str, str]] = []
    files: list[Path] = []
    if (apt_dir / "sources.list").is_file():
        files.append(apt_dir / "sources.list")
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files.extend(sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources")))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        parse = _deb822_entries if path.suffix == ".sources" else _one_line_entries
        entries.extend(parse(text))

    def first(wanted: str) -> str | None:
        return next((uri for uri, s in entries if s == wanted), None)

    main = first(suite)
    if main is None:
        return Mirrors()
    return Mirrors(
        main=main, updates=first(f"{suite}-updates"), security=first(f"{suite}-security")
    )


# --------------------------------------------------------------------------- mounts


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    root = os.path.realpath(path)
    found: list[str] = []
    try:
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == root or point.startswith(root + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        if os.spawnvp(os.P_WAIT, "umount", ["umount", point]) != 0:
            os.spawnvp(os.P_WAIT, "umount", ["umount", "-l", point])
    left = mounts_under(path)
    if left:
        raise ImageError(f"cannot unmount {left[0]}; unmount it by hand, then retry")


def remove_tree(path: Path) -> None:
    """rmtree that first makes sure nothing is mounted below (never delete through a mount)."""
    if not os.path.lexists(path):
        return
    unmount_all(path)
    shutil.rmtree(path)


@contextlib.contextmanager
def mounted(rootfs: Path, log_file: Path) -> Iterator[None]:
    """/proc and a tmpfs /dev/shm inside the rootfs while commands run there (dpkg's maintainer
    scripts, ps, multiprocessing's semaphores). Nothing of the host is bound into it."""
    try:
        for fstype, rel, options in (
            ("proc", "proc", "nosuid,nodev,noexec"),
            ("tmpfs", "dev/shm", "nosuid,nodev,mode=1777"),
        ):
            target = rootfs / rel
            target.mkdir(parents=True, exist_ok=True)
            run(
                ["mount", "-t", fstype, "-o", options, fstype, str(target)],
                log_file=log_file,
                what=f"mount {fstype} on /{rel}",
            )
        yield
    finally:
        unmount_all(rootfs)


@contextlib.contextmanager
def overlay(lower: Path, scratch: Path, log_file: Path) -> Iterator[Path]:
    """A writable overlay of `lower` (which stays untouched) in `scratch`; yields its root.
    Everything under `scratch` is unmounted and deleted afterwards."""
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    remove_tree(scratch)
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    try:
        run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={lower},upperdir={upper},workdir={work}",
                str(merged),
            ],
            log_file=log_file,
            what="mount an overlay of the rootfs",
        )
        yield merged
    finally:
        remove_tree(scratch)


# --------------------------------------------------------------------------- commands


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ImageError(
            f"{what} needs root (debootstrap, chroot and mount); run it as root "
            "(CI and the project's machines run as root)"
        )


def debootstrap(
    rootfs: Path,
    *,
    mirrors: Mirrors,
    log_file: Path,
    cache_dir: Path | None = None,
    suite: str = SUITE,
) -> None:
    """A minimal (`--variant=minbase`) Debian `suite` at `rootfs`, from the host's mirror, with
    every timestamp the tools write set to SOURCE_DATE_EPOCH."""
    tool = require_tool("debootstrap", "debootstrap", "it builds the image's Debian base")
    argv = [tool, "--variant=minbase", "--components=main"]
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        argv.append(f"--cache-dir={cache_dir}")
    argv += [suite, str(rootfs), mirrors.main]
    run(argv, log_file=log_file, what="debootstrap", env=build_env())


def build_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every build command: no host variables, fixed clock and locale."""
    env = {
        "PATH": SYSTEM_PATH,
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "SOURCE_DATE_EPOCH": str(oci.SOURCE_DATE_EPOCH),
        "HOME": "/root",
        "TZ": "UTC",
    }
    env.update(extra or {})
    return env


def in_chroot(
    rootfs: Path,
    argv: Sequence[str],
    *,
    log_file: Path,
    what: str,
    user: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    own_pids: bool = False,
) -> str:
    """Run `argv` inside the rootfs (as `user` uid:gid, else root) with exactly `env`; returns
    its stdout. `own_pids`: in a PID namespace of its own with its own /proc, as in a container
    (the command sees none of the host's processes, and whatever it leaves running is killed
    when it exits)."""
    chroot = require_tool("chroot", "coreutils", "commands run inside the image's rootfs")
    cmd: list[str] = []
    if own_pids:
        unshare = require_tool("unshare", "util-linux", "a PID namespace for the command")
        cmd += [unshare, "--pid", "--fork", "--kill-child", f"--mount-proc={rootfs / 'proc'}"]
    cmd.append(chroot)
    if user is not None:
        cmd.append(f"--userspec={user[0]}:{user[1]}")
    cmd += [str(rootfs), "/usr/bin/env", "-i"]
    cmd += [f"{k}={v}" for k, v in sorted((env or build_env()).items())]
    cmd += list(argv)
    return run(cmd, log_file=log_file, what=what, check=check).stdout


# --------------------------------------------------------------------------- clean-up


def _clear_dir(path: Path, keep_dirs: bool = True) -> None:
    """Delete what is under `path`: files, links, and (unless `keep_dirs`) subdirectories."""
    if not path.is_dir() or path.is_symlink():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            if keep_dirs:
                _clear_dir(child, keep_dirs=True)
            else:
                shutil.rmtree(child)
        else:
            child.unlink()


def normalize_shadow(path: Path, day: int) -> None:
    """Every account's last password change on `day` (days since 1970): shadow(5) field 3."""
    if not path.is_file():
        return
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            fields[2] = str(day)
        out.append(":".join(fields))
    mode = stat.S_IMODE(path.stat().st_mode)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    path.chmod(mode)


def clean_rootfs(rootfs: Path) -> None:
    """Remove what differs from one build to the next and nothing a container needs: logs, apt's
    lists and caches, backup files, caches of ld.so and debconf, the host's name and resolver
    (the runtime provides them), temporary files; /tmp is left empty with mode 1777."""
    for rel in ("var/log", "var/cache/apt", "var/lib/apt/lists"):
        _clear_dir(rootfs / rel)
    for rel in ("tmp", "var/tmp", "root/.cache"):
        _clear_dir(rootfs / rel, keep_dirs=False)
    for pattern in ("var/cache/debconf/*-old", "var/lib/dpkg/*-old", "etc/*-"):
        for p in rootfs.glob(pattern):
            if p.is_file() and not p.is_symlink():
                p.unlink()
    for rel in ("var/cache/ldconfig/aux-cache", "etc/hostname", "etc/resolv.conf"):
        p = rootfs / rel
        if os.path.lexists(p):
            p.unlink()
    machine_id = rootfs / "etc/machine-id"
    if machine_id.is_file():
        machine_id.write_bytes(b"")
    day = oci.SOURCE_DATE_EPOCH // 86400
    normalize_shadow(rootfs / "etc/shadow", day)
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "var/tmp").chmod(0o1777)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def log_disk_usage(rootfs: Path, what: str) -> None:
    total = 0
    for dirpath, _, filenames in os.walk(rootfs):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    log(f"{what}: {total / 2**20:.0f} MiB")
