"""Zip a working directory deterministically, named by the hash of what it holds.

Ray caches a remote working_dir by its URI (ray#49036): a changed zip uploaded under an old name
is silently ignored by nodes that already have it. So the name is the content hash, and the
zip is reproducible (sorted entries, fixed timestamps and modes) so unchanged code maps to the
same name and is not uploaded twice.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pathspec

from cli.errors import CliError, Exit

MIB = 1024 * 1024
DEFAULT_MAX_SIZE = 100 * MIB
"""This platform's cap for a working_dir package (the settings' too), not Ray's: Ray 2.60 refuses
a package of its gRPC message size, 512 MiB, and warns at half that."""

# Every entry lives under this one top-level directory: Ray strips a single top-level directory
# of a remote zip, so without it a project holding only `src/` would lose that level.
TOP = "working_dir"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can store
_ALWAYS_EXCLUDED = (".git/",)


@dataclass(frozen=True)
class Package:
    """A built zip, on local disk until uploaded."""

    path: Path
    """The zip file (in a temporary directory the caller removes)."""
    digest: str
    """sha256 of the zip bytes (hex); names the object."""
    size: int
    """Size of the zip in bytes."""
    files: int
    """Number of files packed."""

    @property
    def name(self) -> str:
        """Object name: `<digest>.zip` (a shortened digest still makes collisions moot)."""
        return f"{self.digest[:32]}.zip"


def _specs_for(root: Path, rel_dir: str, excludes: list[str]) -> pathspec.GitIgnoreSpec | None:
    lines: list[str] = []
    gitignore = root / rel_dir / ".gitignore"
    if gitignore.is_file():
        lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
    if rel_dir == "":
        lines = [*_ALWAYS_EXCLUDED, *lines, *excludes]
    if not lines:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def shown(rel: str) -> str:
    """A path for a one-line message: as it is when printable, else its bytes' repr (a name
    with a newline, a control character or bytes that are not UTF-8 must not break the line)."""
    if rel.isprintable() and not _has_surrogates(rel):
        return rel
    return repr(os.fsencode(rel))


def _has_surrogates(name: str) -> bool:
    # os.walk hands undecodable bytes back as lone surrogates (surrogateescape).
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _refuse(root: Path, rel: str, problem: str) -> CliError:
    return CliError(
        Exit.WORKING_DIR,
        f"working directory {root}: {shown(rel)} {problem}: remove it, or leave it out with "
        f"--exclude (or .gitignore); nothing was uploaded",
    )


def _special_kind(mode: int) -> str | None:
    """What a zip cannot hold, by name; None for a regular file."""
    for test, kind in (
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def collect(root: Path, excludes: list[str]) -> list[tuple[str, Path, int]]:
    """(relative posix path, file, size) of every file to pack, sorted by path.

    `.gitignore` files are honoured at every level (a nested one applies below its directory),
    `excludes` are gitignore-style patterns relative to `root`, `.git/` is never packed.

    What is not excluded must be shippable as it is, or the whole directory is refused (exit
    4, one line naming the entry) rather than shipped with something silently missing:
    - a symlink to a file inside `root` is packed as that file's content, under the link's
      name; a link out of `root` (e.g. `creds -> ~/.aws/credentials`) or to nothing is refused:
      what ships is what the directory holds, and a secret must not reach a shared bucket;
    - a symlink to a directory inside `root` is not followed (that directory ships under its
      own name; following could loop), which is said on stderr; one out of `root` is refused;
    - sockets, FIFOs and devices are refused (a zip holds file contents only);
    - a name that is not UTF-8 is refused (zip entry names are UTF-8; Ray unpacks by them);
    - an unreadable directory is refused (os.walk would otherwise skip it silently).
    """
    root = root.resolve()
    if not root.exists():
        raise CliError(Exit.WORKING_DIR, f"working directory {root} does not exist")
    if not root.is_dir():
        raise CliError(Exit.WORKING_DIR, f"working directory {root} is not a directory")
    specs: dict[str, pathspec.GitIgnoreSpec] = {}
    out: list[tuple[str, Path, int]] = []

    def ignored(rel: str, is_dir: bool) -> bool:
        probe = rel + "/" if is_dir else rel
        for base, spec in specs.items():
            if base == "":
                sub = probe
            elif probe.startswith(base + "/"):
                sub = probe[len(base) + 1 :]
            else:
                continue
            if spec.match_file(sub):
                return True
        return False

    def link_target(path: Path, rel: str) -> Path:
        """Where a symlink leads, refused unless that is an existing place inside `root`."""
        target = path.resolve()
        if not target.exists():
            raise _refuse(root, rel, f"is a symlink to {shown(str(target))}, which does not exist")
        if not target.is_relative_to(root):
            raise _refuse(
                root,
                rel,
                f"is a symlink out of the working directory (to {shown(str(target))}), which "
                "is never shipped",
            )
        return target

    def admitted(dirpath: str, name: str, rel: str, *, is_dir: bool) -> Path | None:
        """The entry's path; None when an exclude leaves it out (then nothing else about it
        matters); refused when its name is not UTF-8."""
        if ignored(rel, is_dir):
            return None
        if _has_surrogates(name):
            raise _refuse(root, rel, "is not a UTF-8 name (zip entry names are UTF-8)")
        return Path(dirpath) / name

    def walk_error(e: OSError) -> None:
        rel = Path(e.filename or root).relative_to(root).as_posix()
        raise _refuse(root, rel, f"cannot be read ({e.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        spec = _specs_for(root, rel_dir, excludes)
        if spec is not None:
            specs[rel_dir] = spec
        prefix = f"{rel_dir}/" if rel_dir else ""
        kept = []
        for d in sorted(dirnames):
            rel = prefix + d
            path = admitted(dirpath, d, rel, is_dir=True)
            if path is None:
                continue
            if path.is_symlink():
                link_target(path, rel)
                print(
                    f"ray-platform submit: not following {shown(rel)}: a link to a directory "
                    "inside the working directory (that directory ships under its own name)",
                    file=sys.stderr,
                )
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            rel = prefix + name
            path = admitted(dirpath, name, rel, is_dir=False)
            if path is None:
                continue
            target = link_target(path, rel) if path.is_symlink() else path
            try:
                st = target.stat()
            except OSError as e:
                raise _refuse(root, rel, f"cannot be read ({e.strerror})") from None
            kind = _special_kind(st.st_mode)
            if kind is not None:
                raise _refuse(root, rel, f"is {kind}, which a zip cannot hold")
            out.append((rel, path, st.st_size))
    out.sort(key=lambda entry: entry[0])
    if not out:
        raise CliError(
            Exit.WORKING_DIR,
            f"working directory {root} has no files to ship (it is empty, or .gitignore, "
            "--exclude and the stack's excludes leave nothing); nothing was uploaded",
        )
    return out


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_size(n: int) -> str:
    """`12.3 MiB`."""
    return _human(float(n))


def check_size(root: Path, files: list[tuple[str, Path, int]], max_size: int) -> int:
    """Total bytes of `files`; over `max_size`, a one-line error naming what to exclude."""
    total = sum(size for _, _, size in files)
    if total <= max_size:
        return total
    # Group by top-level entry: excluding `data/` is the actionable advice, not 900 file names.
    by_top: dict[str, int] = {}
    for rel, _, size in files:
        top = rel.split("/", 1)[0] + ("/" if "/" in rel else "")
        by_top[top] = by_top.get(top, 0) + size
    biggest = sorted(by_top.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    named = ", ".join(f"{shown(name)} ({human_size(size)})" for name, size in biggest)
    raise CliError(
        Exit.WORKING_DIR,
        f"{root} holds {human_size(total)}, over the {human_size(max_size)} limit of "
        f"ray-platform submit (--max-size; the default is Ray's own upload limit); biggest: "
        f"{named} — exclude some (--exclude PATTERN or .gitignore) or put data on the shared "
        "file system or in the bucket; nothing was uploaded",
    )


def build(
    root: Path,
    excludes: list[str],
    max_size: int,
    work_dir: Path,
    *,
    wrap: bool = True,
    check: Callable[[frozenset[str]], None] | None = None,
) -> Package:
    """Collect, check the size limit, write the zip into `work_dir` and hash it.

    `wrap`: every entry under one top-level directory, for a bucket URI (Ray strips it from a
    remote zip). A package uploaded through the dashboard (`gcs://`) is unpacked as it is, so it
    is written without one. `check`: called with the relative paths to be packed before any
    byte is zipped (the caller's own refusals, e.g. an entrypoint script that is not shipped).
    """
    files = collect(root, excludes)
    check_size(root.resolve(), files, max_size)
    if check is not None:
        check(frozenset(rel for rel, _, _ in files))
    fd, tmp = tempfile.mkstemp(suffix=".zip", dir=work_dir)
    os.close(fd)
    path = Path(tmp)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel, src, _ in files:
            info = zipfile.ZipInfo(f"{TOP}/{rel}" if wrap else rel, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = os.access(src, os.X_OK)
            info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
            info.create_system = 3  # unix, so the modes above are read back
            try:
                with open(src, "rb") as fin, zf.open(info, "w") as fout:
                    while chunk := fin.read(MIB):
                        fout.write(chunk)
            except OSError as e:  # e.g. a file without read permission
                raise _refuse(root.resolve(), rel, f"cannot be read ({e.strerror})") from None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return Package(path=path, digest=h.hexdigest(), size=path.stat().st_size, files=len(files))
