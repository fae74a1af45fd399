"""What a submit will do, decided before anything leaves the machine: the refusals, the
runtime_env, where the zip goes and what runs. `--dry-run` prints this and stops.

Nothing here touches the network or writes anything; the caller builds the zip (cli/package.py)
and hands it in, then uploads it (cli/upload.py) and submits (cli/job.py) as planned.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli import buckets, outputs, package
from cli.errors import CliError, Exit
from contract.outputs import WORKING_DIRS

_INSTALLERS = ("pip", "uv", "conda")


@dataclass(frozen=True)
class Wanted:
    """What the command line asks for."""

    entrypoint: tuple[str, ...]
    working_dir: Path
    pip: tuple[str, ...] = ()
    uv: tuple[str, ...] = ()


@dataclass(frozen=True)
class Destination:
    """Where in the stack's bucket the zip goes."""

    bucket: buckets.BucketUri
    key: str


@dataclass(frozen=True)
class Plan:
    """One submit, decided."""

    entrypoint: tuple[str, ...]
    runtime_env: dict[str, Any]
    """As submitted. With a bucket, its `working_dir` is the zip's URI there; without, the local
    zip, which Ray's Job Submission client uploads through the dashboard when submitting."""
    working_dir_uri: str
    """Where the job finds the zip: `s3://…`, `gs://…`, or `gcs://_ray_pkg_<hash>.zip`."""
    upload_to: Destination | None
    """The zip's place in the stack's bucket; None: it goes through the Ray dashboard."""
    shipped: str
    """What is shipped, for people: `N files (size) from DIR`."""

    def describe(self) -> str:
        """The `--dry-run` text: the runtime_env as the job gets it, then the upload and run."""
        shown = {**self.runtime_env, "working_dir": self.working_dir_uri}
        via = "to" if self.upload_to is not None else "through the Ray dashboard as"
        return (
            f"{json.dumps(shown, indent=2, sort_keys=True)}\n"
            f"would upload {self.shipped} {via} {self.working_dir_uri} (skipped if already "
            f"there), then run: {shlex.join(self.entrypoint)}"
        )


def via_bucket(
    stack: outputs.StackOutputs, pkg: package.Package, where: buckets.BucketUri, wanted: Wanted
) -> Plan:
    """The zip goes to `<bucketUri>/working_dirs/<hash>.zip`, and the job reads it from there."""
    key = where.key(WORKING_DIRS, pkg.name)
    uri = where.uri(key)
    return Plan(
        entrypoint=wanted.entrypoint,
        runtime_env=runtime_env_for(stack, uri, wanted.pip, wanted.uv),
        working_dir_uri=uri,
        upload_to=Destination(where, key),
        shipped=_shipped(pkg, wanted),
    )


def via_dashboard(
    stack: outputs.StackOutputs, pkg: package.Package, package_uri: str, wanted: Wanted
) -> Plan:
    """No bucket (a cluster without one, e.g. kind): Ray's own package upload through the
    dashboard, which stores the zip in the cluster (`package_uri`, see ray_package_uri)."""
    return Plan(
        entrypoint=wanted.entrypoint,
        runtime_env=runtime_env_for(stack, str(pkg.path), wanted.pip, wanted.uv),
        working_dir_uri=package_uri,
        upload_to=None,
        shipped=_shipped(pkg, wanted),
    )


def _shipped(pkg: package.Package, wanted: Wanted) -> str:
    return f"{pkg.files} files ({package.human_size(pkg.size)}) from {wanted.working_dir.resolve()}"


def refuse(stack: outputs.StackOutputs, pip: Sequence[str], uv: Sequence[str]) -> None:
    """The refusals that need no zip, made before any packaging work: package installs in prod,
    a shared package asked for again."""
    if stack.mode == "prod":
        runtime_env_for(stack, "", pip, uv)
    refuse_shared(stack, pip, uv)


def excludes(stack: outputs.StackOutputs, extra: list[str]) -> list[str]:
    """The stack's runtime_env `excludes`, then the command line's (applied when zipping)."""
    stack_excludes = stack.runtime_env.get("excludes") or []
    if not isinstance(stack_excludes, list):
        raise CliError(Exit.OUTPUTS, f"runtime_env 'excludes' of {stack.source} is not a list")
    return [*map(str, stack_excludes), *extra]


def _merge_packages(env: dict[str, Any], key: str, extra: Sequence[str]) -> None:
    """Append `extra` to the runtime_env's `pip`/`uv` (a list, or a dict with `packages`)."""
    if not extra:
        return
    current = env.get(key)
    if current is None:
        env[key] = list(extra)
    elif isinstance(current, list):
        env[key] = [*current, *extra]
    elif isinstance(current, dict):
        env[key] = {**current, "packages": [*current.get("packages", []), *extra]}
    else:
        # A requirements-file path cannot be extended from here.
        raise CliError(
            Exit.OUTPUTS,
            f"the stack's runtime_env {key!r} is {current!r}; --{key} needs a list to extend",
        )


_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(req: str) -> str | None:
    """The project a requirement names, normalized (PEP 503); None for a URL or a path. (The
    program's own copy is infra/settings/values.py: the CLI ships without it.)"""
    if "://" in req.split("@", 1)[0] or req.lstrip().startswith(("-", ".", "/")):
        return None
    match = _NAME.match(req)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def refuse_shared(stack: outputs.StackOutputs, pip: Sequence[str], uv: Sequence[str]) -> None:
    """A shared package is on PYTHONPATH, ahead of the job's environment: `--pip` for one
    would install a copy that never loads, so the job would run with the old version."""
    shared = {n: req for req in stack.shared_packages if (n := requirement_name(req))}
    for flag, reqs in (("pip", pip), ("uv", uv)):
        for req in reqs:
            name = requirement_name(req)
            if name in shared:
                raise CliError(
                    Exit.USAGE,
                    f"--{flag} {req} refused: {name} is a shared package of {stack.source} "
                    f"({shared[name]}, on PYTHONPATH ahead of the job's environment, so it would "
                    "load instead); ask for the version in ray.sharedPackages, or drop the flag",
                )


def runtime_env_for(
    stack: outputs.StackOutputs, working_dir_uri: str, pip: Sequence[str], uv: Sequence[str]
) -> dict[str, Any]:
    """The stack default plus `working_dir`; package installs only in dev."""
    if stack.mode == "prod":
        asked = [f"--{k}" for k, v in (("pip", pip), ("uv", uv)) if v]
        asked += [k for k in _INSTALLERS if k in stack.runtime_env]
        if asked:
            raise CliError(
                Exit.POLICY,
                f"{' and '.join(asked)} refused: {stack.source} is prod, where packages come "
                "from the image; bake them into it (code via the working_dir zip is fine)",
            )
    refuse_shared(stack, pip, uv)
    env: dict[str, Any] = copy.deepcopy(stack.runtime_env)
    # The stack's `excludes` were applied when zipping; Ray ignores them for a remote URI.
    env.pop("excludes", None)
    env["working_dir"] = working_dir_uri
    _merge_packages(env, "pip", pip)
    _merge_packages(env, "uv", uv)
    return env


_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
_SHELLS = ("bash", "sh")
# Interpreter options that take the next word as their value (so it is not the script).
_OPTION_VALUES = {"python": ("-W", "-X"), "shell": ("-o", "-O", "+O")}


def entry_script(entrypoint: Sequence[str]) -> str | None:
    """The script an entrypoint runs from the working directory, when it names one: `python
    [options] SCRIPT …`, `bash|sh [options] SCRIPT …` or `./SCRIPT …`. None when it runs none
    that can be checked here (`python -m …`, `-c …`, a command on the image's PATH, an absolute
    path: those live on the image, not in the zip)."""
    head = entrypoint[0]
    program = head.rsplit("/", 1)[-1]
    if _PYTHON.fullmatch(program):
        kind = "python"
    elif program in _SHELLS:
        kind = "shell"
    else:
        return head if "/" in head and not head.startswith("/") else None
    words = iter(entrypoint[1:])
    for word in words:
        if word in ("-m", "-c", "-", "--"):
            return None  # a module, a command string, stdin: no script file
        if word in _OPTION_VALUES[kind]:
            next(words, None)
        elif not word.startswith(("-", "+")):
            return None if word.startswith("/") else word
    return None


def check_entry_script(entrypoint: Sequence[str], root: Path, shipped: frozenset[str]) -> None:
    """Refuse, before anything is zipped or uploaded, an entrypoint whose script the job would
    not find: not in the working directory, or left out of the zip by an exclude."""
    script = entry_script(entrypoint)
    if script is None:
        return
    rel = posixpath.normpath(script)
    if rel in shipped:
        return
    where = root.resolve()
    if not rel.startswith("../") and (where / rel).is_file():
        why = f"is in {where} but excluded from the zip (.gitignore, --exclude, stack excludes)"
    else:
        why = f"is not in the working directory {where}"
    raise CliError(
        Exit.USAGE,
        f"the entrypoint's script {package.shown(script)} {why}, so the job could not run it; "
        "nothing was uploaded",
    )


def ray_package_uri(path: Path) -> str:
    """The `gcs://` URI Ray's Job Submission client gives a local zip it uploads (content
    addressed: ray/_private/runtime_env/packaging.py, get_uri_for_package). Reads the zip."""
    return f"gcs://_ray_pkg_{hashlib.sha1(path.read_bytes()).hexdigest()}.zip"
