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
from dataclasses import dataclass
from pathlib import Path

import pathspec

from cli.errors import Exit, SubmitError

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


def collect(root: Path, excludes: list[str]) -> list[tuple[str, Path, int]]:
    """(relative posix path, file, size) of every file to pack, sorted by path.

    `.gitignore` files are honoured at every level (a nested one applies below its directory),
    `excludes` are gitignore-style patterns relative to `root`, `.git/` is never packed.
    Symlinks are packed as the files they point to when those are inside `root`; links to
    directories are not followed, and a link out of the directory (e.g. `creds ->
    ~/.aws/credentials`) is skipped with a warning: what ships is what the directory holds.
    """
    root = root.resolve()
    if not root.is_dir():
        raise SubmitError(Exit.TOO_BIG, f"working directory {root} does not exist")
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

    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        spec = _specs_for(root, rel_dir, excludes)
        if spec is not None:
            specs[rel_dir] = spec
        prefix = f"{rel_dir}/" if rel_dir else ""
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not ignored(prefix + d, True) and not (Path(dirpath) / d).is_symlink()
        )
        for name in filenames:
            rel = prefix + name
            if ignored(rel, False):
                continue
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:
                continue  # a dangling symlink: nothing to pack
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                print(
                    f"ray-platform submit: not packing {rel}: it links outside the working "
                    "directory",
                    file=sys.stderr,
                )
                continue
            if stat.S_ISREG(st.st_mode):
                out.append((rel, path, st.st_size))
    out.sort(key=lambda entry: entry[0])
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
    named = ", ".join(f"{name} ({human_size(size)})" for name, size in biggest)
    raise SubmitError(
        Exit.TOO_BIG,
        f"{root} holds {human_size(total)}, over the {human_size(max_size)} limit; biggest: "
        f"{named} — exclude some (--exclude PATTERN or .gitignore) or put data on the shared "
        "file system or in the bucket",
    )


def build(
    root: Path, excludes: list[str], max_size: int, work_dir: Path, *, wrap: bool = True
) -> Package:
    """Collect, check the size limit, write the zip into `work_dir` and hash it.

    `wrap`: every entry under one top-level directory, for a bucket URI (Ray strips it from a
    remote zip). A package uploaded through the dashboard (`gcs://`) is unpacked as it is, so it
    is written without one.
    """
    files = collect(root, excludes)
    check_size(root.resolve(), files, max_size)
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
            with open(src, "rb") as fin, zf.open(info, "w") as fout:
                while chunk := fin.read(MIB):
                    fout.write(chunk)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return Package(path=path, digest=h.hexdigest(), size=path.stat().st_size, files=len(files))
