"""What the image recipes share: the Image record, errors, progress lines, the cache, locks and
running commands with their output kept in a log."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cli.image import oci
from infra.cache import cache_root

RECORD = "image.json"


class ImageError(RuntimeError):
    """An image could not be built or pushed; the message is one line meant for people."""


@dataclass(frozen=True)
class Image:
    """A built image: an OCI layout on disk holding `repo:tag`, whose manifest is `digest`."""

    repo: str
    """The repository path under a registry: `rayproject/ray`, `pause`."""
    tag: str
    layout: Path
    """The OCI image layout directory (`skopeo ... oci:<layout>:<tag>`)."""
    digest: str
    """`sha256:...` of the manifest: what a registry serves it under."""
    size: int = 0
    """Bytes of layers + config + manifest (uncompressed layers: also what the registry stores)."""

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"


def log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def images_root() -> Path:
    """`<cache>/images/`: wheelhouses, root file systems, layouts, logs."""
    return cache_root() / "images"


def input_key(inputs: Mapping[str, Any]) -> str:
    """A short, stable hash of a recipe's inputs (canonical JSON)."""
    return hashlib.sha256(oci.canonical_json(dict(inputs))).hexdigest()[:16]


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise builds of one cache entry across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build holding {path.name}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def timed(timings: dict[str, float], step: str, what: str) -> Iterator[None]:
    log(f"{what} ...")
    start = time.monotonic()
    yield
    timings[step] = round(time.monotonic() - start, 1)
    log(f"{what}: done in {timings[step]:.0f}s")


def write_record(directory: Path, image: Image, extra: Mapping[str, Any]) -> None:
    data = {k: v for k, v in asdict(image).items() if k != "layout"}
    data["layout"] = image.layout.name
    data.update(extra)
    tmp = directory / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(directory / RECORD)


def read_record(directory: Path) -> Image | None:
    """The image recorded in `directory`, if its layout still holds it unchanged."""
    try:
        data = json.loads((directory / RECORD).read_text(encoding="utf-8"))
        image = Image(
            repo=data["repo"],
            tag=data["tag"],
            layout=directory / data["layout"],
            digest=data["digest"],
            size=int(data.get("size", 0)),
        )
        digest, _, _ = oci.read_layout(image.layout, image.tag)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return image if digest == image.digest else None


def read_extra(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def which(name: str) -> str | None:
    """`shutil.which` that also looks in the sbin directories (root's tools, e.g. debootstrap,
    live there, and a non-login PATH may not name them)."""
    extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"]
    path = os.pathsep.join([os.environ.get("PATH", ""), *extra])
    return shutil.which(name, path=path)


def require_tool(name: str, package: str, why: str) -> str:
    found = which(name)
    if found is None:
        raise ImageError(
            f"`{name}` was not found ({why}); install it with: "
            f"apt-get update && apt-get install -y {package}"
        )
    return found


_NOISE = re.compile(r"^\s*$|^(I|W): |^\s*(\[notice\]|Progress)")


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if not _NOISE.match(ln)]
    errors = [ln for ln in lines if re.match(r"^(E:|ERROR|error|fatal|FATAL)", ln)]
    return (errors or lines or ["(no output)"])[-1][:300]


def run(
    argv: Sequence[str],
    *,
    log_file: Path,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, its output appended to `log_file`; ImageError (one line, with the log's
    path) when it fails and `check`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
    proc = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    with open(log_file, "a", encoding="utf-8") as f:
        f.write(proc.stdout)
        f.write(proc.stderr)
    if check and proc.returncode != 0:
        raise ImageError(
            f"{what} failed (exit {proc.returncode}): "
            f"{last_line(proc.stderr + chr(10) + proc.stdout)} (log: {log_file})"
        )
    return proc
