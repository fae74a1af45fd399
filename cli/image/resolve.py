"""The application's requirements, resolved against the base image and installed into a layer.

No interpreter of the base runs: uv resolves for the base's Python version and manylinux
platform (`--python-version`, `--python-platform`), with every package the base has pinned to the
version it has (a constraints file), wheels only (a build would run the host's compiler for the
host's platform). What the base already has is not installed again; the rest is installed by
uv into a staging tree at the base's site-packages path, `--no-deps` from the resolved list.

Two things uv's `--target` gets wrong for an image are mended here: console scripts carry the
host interpreter's shebang and sit in `<target>/bin`; they move to the base's scripts directory,
name the base's interpreter, and the RECORD lines that list them are rewritten to match (path,
hash, size), so `pip uninstall` and `pip check` inside the image see a consistent install.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from cli.errors import CliError, Exit
from cli.image import tools
from cli.image.base import BaseImage, canonical_name


@dataclass(frozen=True)
class Resolution:
    pinned: dict[str, str]
    """Canonical name -> version: everything the application needs, base packages included."""
    to_install: dict[str, str]
    """The part of `pinned` the base does not have."""
    hashes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Canonical name -> the `--hash` values the lock file gives it (checked at install)."""


def base_pins(base: BaseImage) -> dict[str, str]:
    """What the base has, by version. pip-freeze.txt is what the base says it pins, but `pip
    freeze` leaves out pip, setuptools and wheel, names a URL for some, and a base extended
    after the freeze was written has more: the `*.dist-info` directories in its site-packages
    are what is really there, so they win; the freeze fills in only what the scan missed."""
    pins = {name: v for name, v in base.freeze.items() if v is not None}
    pins.update(base.installed)
    return pins


def base_environment(base: BaseImage) -> dict[str, str]:
    """PEP 508 marker values of the base's interpreter (without running it)."""
    machine = base.python_platform.split("-", 1)[0]
    return {
        "python_version": base.python_version,
        "python_full_version": f"{base.python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def applicable(reqs: list[Requirement], base: BaseImage) -> list[Requirement]:
    """The requirements whose environment marker holds in the base (a universal lock has lines
    for other platforms and Pythons)."""
    env = base_environment(base)
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def check_locked(reqs: list[Requirement], path: Path) -> None:
    """Every line pins one version (`==`): an open range would make the image depend on what the
    index serves on the day of the build."""
    for req in reqs:
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
            raise CliError(
                Exit.USAGE,
                f"{path}: {req} is not locked to one version (name==version); lock the file "
                "first, against the base: uv pip compile requirements.in -c pip-freeze.txt",
            )


def read_requirements(path: Path) -> list[Requirement]:
    """The requirement lines of a requirements file (continuations joined; `--hash` dropped:
    `lock_hashes` reads them, and uv reads the file itself for the resolution)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(Exit.USAGE, f"cannot read the requirements file {path}: {e}") from None
    reqs: list[Requirement] = []
    joined = re.sub(r"\\\r?\n", " ", text)
    for number, raw in enumerate(joined.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        line = re.sub(r"\s--hash[=\s]\S+", "", line).strip()
        if not line:
            continue
        if line.startswith("-"):
            raise CliError(
                Exit.USAGE,
                f"{path}:{number}: option {line.split()[0]!r} is not supported here (give the "
                "index with --index-url; no -r/-c/-e: one locked file)",
            )
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement as e:
            raise CliError(Exit.USAGE, f"{path}:{number}: not a requirement: {e}") from None
    return reqs


def lock_hashes(path: Path) -> dict[str, tuple[str, ...]]:
    """Canonical name -> its `--hash=sha256:…` values, for a lock file that has them."""
    joined = re.sub(r"\\\r?\n", " ", path.read_text(encoding="utf-8"))
    found: dict[str, tuple[str, ...]] = {}
    for raw in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        hashes = tuple(re.findall(r"--hash[=\s](\S+)", line))
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if hashes and m:
            found[canonical_name(m[1])] = hashes
    return found


def check_conflicts(reqs: list[Requirement], pins: dict[str, str], path: Path) -> None:
    """A requirement the base's version does not satisfy: one line naming both versions."""
    for req in reqs:
        have = pins.get(canonical_name(req.name))
        if (
            have is not None
            and req.specifier
            and not req.specifier.contains(have, prereleases=True)
        ):
            raise CliError(
                Exit.REQUIREMENTS,
                f"{path}: {req} conflicts with the base image's {req.name}=={have} "
                "(/home/ray/pip-freeze.txt); the image cannot hold both",
            )
        if req.url:
            raise CliError(
                Exit.USAGE, f"{path}: {req.name} comes from a URL; lock it to a version instead"
            )


@dataclass(frozen=True)
class Index:
    """Where wheels come from: a PEP 503 index (default uv's, PyPI), extra directories of
    wheels, or only those (`no_index`)."""

    url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False


def _uv_common(base: BaseImage, index: Index) -> list[str]:
    argv = [
        "--python-version",
        base.python_version,
        "--python-platform",
        base.python_platform,
        "--only-binary",
        ":all:",
        "--no-config",  # a uv.toml of the machine must not change the image
    ]
    if index.url:
        argv += ["--index-url", index.url]
    for links in index.find_links:
        argv += ["--find-links", links]
    if index.no_index:
        argv.append("--no-index")
    return argv


def resolve(
    base: BaseImage, requirements: Path, work: Path, index: Index, log: tools.Log
) -> Resolution:
    reqs = applicable(read_requirements(requirements), base)
    pins = base_pins(base)
    check_conflicts(reqs, pins, requirements)
    check_locked(reqs, requirements)
    work.mkdir(parents=True, exist_ok=True)
    constraints = work / "base-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    uv = tools.require("uv", "it resolves and installs the requirements")
    log(
        f"resolving {requirements.name} for Python {base.python_version} on "
        f"{base.python_platform}, held to the base's {len(pins)} pins"
    )
    proc = tools.run(
        [uv, "pip", "compile", str(requirements), "--constraint", str(constraints),
         "--no-header", "--no-annotate", "--quiet", *_uv_common(base, index)],
        what=f"resolving {requirements}",
        code=Exit.REQUIREMENTS,
        explain=lambda out: (
            f"{requirements} cannot be resolved against the base image's pins: "
            f"{tools.key_line(out)}"
        ),
    )  # fmt: skip
    pinned: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if m:
            pinned[canonical_name(m[1])] = m[2]
    to_install = {n: v for n, v in pinned.items() if n not in pins}
    locked = {canonical_name(r.name): next(iter(r.specifier)).version for r in reqs}
    missing = sorted(f"{n}=={v}" for n, v in to_install.items() if locked.get(n) != v)
    if missing:
        raise CliError(
            Exit.REQUIREMENTS,
            f"{requirements} is not complete: it needs {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''} too (a dependency the base does not have); "
            "lock it against the base: uv pip compile requirements.in -c pip-freeze.txt",
        )
    return Resolution(pinned, to_install, lock_hashes(requirements))


def install(
    base: BaseImage, resolution: Resolution, stage: Path, work: Path, index: Index,
    log: tools.Log,
) -> int:  # fmt: skip
    """Install `resolution.to_install` under `stage` (the layer's root) at the base's paths;
    returns how many distributions went in."""
    if not resolution.to_install:
        return 0
    site = stage / base.site_packages
    site.mkdir(parents=True, exist_ok=True)
    wanted = work / "install.txt"
    lines = []
    for name, version in sorted(resolution.to_install.items()):
        hashes = "".join(f" --hash={h}" for h in resolution.hashes.get(name, ()))
        lines.append(f"{name}=={version}{hashes}\n")
    wanted.write_text("".join(lines))
    # A lock with hashes is held to them: every wheel installed must match one (uv refuses a
    # package without a hash then, so a partial lock cannot slip an unchecked one in).
    checked = ["--require-hashes"] if resolution.hashes else []
    uv = tools.require("uv", "it resolves and installs the requirements")
    log(f"installing {len(resolution.to_install)} distributions into /{base.site_packages}")
    tools.run(
        [uv, "pip", "install", "--target", str(site), "--no-deps", "--link-mode", "copy",
         "--quiet", "--requirements", str(wanted), *checked, *_uv_common(base, index)],
        what="installing the requirements",
        code=Exit.REQUIREMENTS,
    )  # fmt: skip
    _drop_installer_state(site)
    _move_scripts(base, stage, site)
    return len(resolution.to_install)


def _drop_installer_state(site: Path) -> None:
    """What uv leaves that is about this machine, not the package: `uv_cache.json` (the wheel
    file's mtime, for its cache) with its RECORD line, and the target's `.lock` file. Left in,
    the same wheels fetched on another day would give another digest."""
    (site / ".lock").unlink(missing_ok=True)
    for cache_info in sorted(site.glob("*.dist-info/uv_cache.json")):
        record = cache_info.parent / "RECORD"
        cache_info.unlink()
        if record.is_file():
            rows = list(csv.reader(io.StringIO(record.read_text(encoding="utf-8"))))
            rows = [r for r in rows if not (r and r[0].endswith("/uv_cache.json"))]
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(rows)
            record.write_text(out.getvalue(), encoding="utf-8")


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _move_scripts(base: BaseImage, stage: Path, site: Path) -> None:
    scripts = site / "bin"
    if not scripts.is_dir():
        return
    dest = stage / base.scripts_dir
    dest.mkdir(parents=True, exist_ok=True)
    rel_from_site = os.path.relpath(dest, site)
    moved: dict[str, tuple[str, str, int]] = {}  # old RECORD path -> (new path, hash, size)
    for script in sorted(scripts.iterdir()):
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            data = b"#!" + base.interpreter.encode() + b"\n" + data.split(b"\n", 1)[1]
        target = dest / script.name
        target.write_bytes(data)
        target.chmod(0o755)
        script.unlink()
        moved[f"bin/{script.name}"] = (
            f"{rel_from_site}/{script.name}",
            _record_hash(data),
            len(data),
        )
    scripts.rmdir()
    for record in sorted(site.glob("*.dist-info/RECORD")):
        rows = list(csv.reader(io.StringIO(record.read_text(encoding="utf-8"))))
        changed = False
        for row in rows:
            if row and row[0] in moved:
                row[:3] = [moved[row[0]][0], moved[row[0]][1], str(moved[row[0]][2])]
                changed = True
        if changed:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(rows)
            record.write_text(out.getvalue(), encoding="utf-8")
