"""`ray-platform submit`: ship the working directory through the stack's bucket and run a job.

    ray-platform submit --stack dev -- python train.py

Reads the stack's outputs, zips the working directory (named by its content hash), uploads it
to `<bucketUri>/working_dirs/<hash>.zip` unless it is already there (a stack without a bucket:
through the Ray dashboard instead, Ray's own `gcs://` package upload), submits the entrypoint
with the stack's runtime_env plus that `working_dir`, streams the logs and exits with the job's
status. Exit codes: see `cli.errors.Exit` (and `--help`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import posixpath
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from cli import buckets, follow, outputs, package
from cli.errors import Exit, SubmitError

WORKING_DIRS = "working_dirs"
"""Under the bucket prefix: the zips. The stack expires them (components/wiring.py's
WORKING_DIRS, storage.artifactBucket.workingDirExpiryDays); a later submit uploads again."""
_INSTALLERS = ("pip", "uv", "conda")

EPILOG = """\
exit codes:
  0    the job SUCCEEDED (or --dry-run printed its plan)
  1    the job FAILED (including a runtime_env that could not be set up)
  2    bad command line (also: --pip/--uv naming one of the stack's shared packages, or
       an entrypoint script that is not in the working directory)
  3    stack missing, or its outputs missing, malformed or not to be trusted (edited by
       hand); or no Pulumi CLI
  4    working directory not shippable: missing, empty, over --max-size, or holding a
       link out of it, a socket/FIFO/device, a non-UTF-8 name or an unreadable entry
  5    bucket unreachable, missing, or refused the upload (nothing is left under the
       zip's name: run the same command again once it is back)
  6    dashboard unreachable (port-forward, head pod, Kubernetes API), or contact with the
       Ray head lost while following the job: not regained within
       $RAY_PLATFORM_RECONNECT_TIMEOUT seconds (120; the job's fate unknown), or the head
       came back without the job (lost with the old head)
  7    Ray auth token missing, unreadable or refused
  8    refused in prod: pip/uv/conda in the runtime_env
  9    the job was STOPPED
  130  Ctrl-C: detached, the job keeps running
"""


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 100MiB, 2GiB or 500000")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    return int(float(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit])


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ray-platform submit",
        description="Run ENTRYPOINT as a Ray job on a stack's cluster, with this directory's code.",
        usage="ray-platform submit (--stack NAME | --outputs FILE) [options] -- ENTRYPOINT...",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--stack", help="Pulumi stack to read outputs from (pulumi stack output)")
    src.add_argument(
        "--outputs", type=Path, metavar="FILE", help="JSON of `pulumi stack output --json`"
    )
    ap.add_argument("--address", help="dashboard address (default: $RAY_ADDRESS, else forward)")
    ap.add_argument("--bucket", help="bucket URI overriding the stack's bucketUri")
    ap.add_argument(
        "--working-dir", type=Path, default=Path("."), help="directory to ship (default: .)"
    )
    ap.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="gitignore-style pattern to leave out (repeatable; .gitignore is honoured)",
    )
    ap.add_argument(
        "--max-size",
        type=_size,
        default=package.DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help="refuse a directory bigger than this (default: 100MiB)",
    )
    ap.add_argument(
        "--pip", action="append", default=[], metavar="REQ", help="add a pip package (dev only)"
    )
    ap.add_argument(
        "--uv", action="append", default=[], metavar="REQ", help="add a uv package (dev only)"
    )
    ap.add_argument("--no-wait", action="store_true", help="submit and return; do not follow")
    ap.add_argument(
        "--dry-run", action="store_true", help="print the runtime_env and the upload; do nothing"
    )
    return ap


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _merge_packages(env: dict[str, Any], key: str, extra: list[str]) -> None:
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
        raise SubmitError(
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


def refuse_shared(stack: outputs.StackOutputs, pip: list[str], uv: list[str]) -> None:
    """A shared package is on PYTHONPATH, ahead of the job's environment: `--pip` for one
    would install a copy that never loads, so the job would run with the old version."""
    shared = {n: req for req in stack.shared_packages if (n := requirement_name(req))}
    for flag, reqs in (("pip", pip), ("uv", uv)):
        for req in reqs:
            name = requirement_name(req)
            if name in shared:
                raise SubmitError(
                    Exit.USAGE,
                    f"--{flag} {req} refused: {name} is a shared package of {stack.source} "
                    f"({shared[name]}, on PYTHONPATH ahead of the job's environment, so it would "
                    "load instead); ask for the version in ray.sharedPackages, or drop the flag",
                )


def runtime_env_for(
    stack: outputs.StackOutputs, working_dir_uri: str, pip: list[str], uv: list[str]
) -> dict[str, Any]:
    """The stack default plus `working_dir`; package installs only in dev."""
    if stack.mode == "prod":
        asked = [f"--{k}" for k, v in (("pip", pip), ("uv", uv)) if v]
        asked += [k for k in _INSTALLERS if k in stack.runtime_env]
        if asked:
            raise SubmitError(
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


CONDITIONAL_ATTEMPTS = 4
"""Uploads tried while concurrent writes keep beating this one to the key (S3's 409, or a 412
that leaves an object of another size): then exit 5, with nothing of ours half-stored."""


def _upload(bucket: buckets.Bucket, pkg: package.Package, key: str, uri: str) -> None:
    """Upload unless the object is there, exactly once however many submits race for it.

    Its name is the content's hash and uploads are atomic (see buckets.Bucket), so an object of
    the zip's size under that name is this zip; one of another size is not (put there by hand,
    or by a client that wrote objects piecemeal) and is replaced rather than trusted. The
    upload is conditional on the key still being as looked at here, so when several submits
    of one directory all find it absent, the store lets one of them write it and refuses the
    others (412), which then find the zip there."""
    raced = False
    for attempt in range(CONDITIONAL_ATTEMPTS):
        found = bucket.stat(key)
        if found is not None and found.size == pkg.size:
            # After a refusal the writer was another submit (or, rarely, a retried request of
            # our own whose first try had landed): either way the zip is stored once.
            why = "uploaded by a concurrent submit" if raced else "same content"
            _say(f"{uri} is already in the bucket ({why}): not uploading")
            return
        if found is not None:
            _say(
                f"{uri} is in the bucket with {found.size} bytes, not this zip's {pkg.size}: "
                "replacing it"
            )
        if attempt == 0:
            _say(f"uploading {pkg.files} files ({package.human_size(pkg.size)}) to {uri}")
        with tqdm(
            total=pkg.size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=None,
        ) as bar:
            written = bucket.upload(pkg.path, key, bar.update, replacing=found)
        if written is buckets.Written.STORED:
            # The one line that says this submit is the one that stored it (racers that lost
            # said "uploading" too, then "already in the bucket").
            _say(f"stored {uri}")
            return
        raced = True
        if written is buckets.Written.CONFLICT:
            # Another conditional write is in flight; it will land or fail shortly.
            time.sleep(0.2 * 2**attempt)
    raise SubmitError(
        Exit.BUCKET,
        f"{uri} kept changing under concurrent writes ({CONDITIONAL_ATTEMPTS} tries): "
        "run the same command again",
    )


@contextlib.contextmanager
def _dashboard(address: str | None, stack: outputs.StackOutputs) -> Iterator[tuple[str, bool]]:
    """(address, whether we forward it ourselves)."""
    if address:
        yield address, False
        return
    from cli import dashboard

    assert stack.namespace and stack.cluster_name  # outputs.load requires them without address
    with dashboard.port_forward(stack.namespace, stack.cluster_name) as forwarded:
        _say(f"forwarding {forwarded} to {stack.namespace}/{stack.cluster_name}-head-svc:8265")
        yield forwarded, True


def _token(stack: outputs.StackOutputs) -> str | None:
    env_token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if env_token:
        return env_token
    if not stack.token_auth:
        return None
    from cli import dashboard

    return dashboard.cluster_token(stack.namespace, stack.cluster_name)


def _headers(token: str | None) -> dict[str, str]:
    # The header is set explicitly: Ray adds one by itself only when this process has
    # RAY_AUTH_MODE=token, and a user's shell may have neither that nor RAY_AUTH_TOKEN.
    return {"Authorization": f"Bearer {token}"} if token else {}


def _client(address: str, token: str | None, limits: follow.Limits) -> Any:
    from ray.exceptions import AuthenticationError

    try:
        return follow.client(address, _headers(token) or None, limits)
    except AuthenticationError as e:
        raise _auth_error(e, token) from None
    except follow.contact_errors():
        raise SubmitError(Exit.CLUSTER, f"cannot reach the Ray dashboard at {address}") from None


def _auth_error(e: Exception, token: str | None) -> SubmitError:
    if token is None:
        return SubmitError(
            Exit.AUTH, "the cluster wants a Ray auth token and none was sent: set RAY_AUTH_TOKEN"
        )
    return SubmitError(
        Exit.AUTH,
        "the cluster refused the Ray auth token (wrong or stale RAY_AUTH_TOKEN?): "
        + " ".join(str(e).split())[:120],
    )


def _lost(e: follow.JobLost, hint: str) -> SubmitError:
    if e.gone:
        return SubmitError(
            Exit.CLUSTER,
            f"job {e.job_id} was lost with the Ray head: {e.why} (the head was replaced and "
            "keeps no job table across restarts); submit it again",
        )
    return SubmitError(
        Exit.CLUSTER,
        f"lost contact with the Ray head while following job {e.job_id}: {e.why}; its fate is "
        "unknown (the head was restarted or is unreachable)",
        hint=f"check later, {hint}",
    )


def _follow_hint(job_id: str, address: str, forwarded: bool, stack: outputs.StackOutputs) -> str:
    # Our own forward dies with this process; the stack's port-forward command serves rayAddress.
    addr = (stack.ray_address or "http://127.0.0.1:8265") if forwarded else address
    first = f"with `{stack.port_forward_command}` running, " if forwarded else ""
    auth = "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=… " if stack.token_auth else ""
    return (
        f"{first}follow: {auth}ray job logs -f {job_id} --address {addr}\n"
        f"  stop:   {auth}ray job stop {job_id} --address {addr}"
    )


_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
_SHELLS = ("bash", "sh")
# Interpreter options that take the next word as their value (so it is not the script).
_OPTION_VALUES = {"python": ("-W", "-X"), "shell": ("-o", "-O", "+O")}


def entry_script(entrypoint: list[str]) -> str | None:
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


def check_entry_script(entrypoint: list[str], root: Path, shipped: frozenset[str]) -> None:
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
    raise SubmitError(
        Exit.USAGE,
        f"the entrypoint's script {package.shown(script)} {why}, so the job could not run it; "
        "nothing was uploaded",
    )


def ray_package_uri(path: Path) -> str:
    """The `gcs://` URI Ray's Job Submission client gives a local zip it uploads (content
    addressed: ray/_private/runtime_env/packaging.py, get_uri_for_package)."""
    return f"gcs://_ray_pkg_{hashlib.sha1(path.read_bytes()).hexdigest()}.zip"


def run(args: argparse.Namespace, entrypoint: list[str]) -> Exit:
    """Everything after argument parsing; raises SubmitError for every user-facing failure."""
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    stack = outputs.load(
        stack=args.stack, outputs_file=args.outputs, bucket=args.bucket, address=address
    )
    where = buckets.parse(stack.bucket_uri) if stack.bucket_uri else None
    # Refuse before any packaging work.
    if stack.mode == "prod":
        runtime_env_for(stack, "", args.pip, args.uv)
    refuse_shared(stack, args.pip, args.uv)
    # The zip lives until the job is submitted: without a bucket, the client uploads it then.
    with tempfile.TemporaryDirectory(prefix="ray-platform-") as tmp:
        stack_excludes = stack.runtime_env.get("excludes") or []
        if not isinstance(stack_excludes, list):
            raise SubmitError(
                Exit.OUTPUTS, f"runtime_env 'excludes' of {stack.source} is not a list"
            )
        excludes = [*map(str, stack_excludes), *args.exclude]
        pkg = package.build(
            args.working_dir,
            excludes,
            args.max_size,
            Path(tmp),
            wrap=where is not None,
            check=lambda shipped: check_entry_script(entrypoint, args.working_dir, shipped),
        )
        source = (
            f"{pkg.files} files ({package.human_size(pkg.size)}) from {args.working_dir.resolve()}"
        )
        if where is None:
            # No bucket (a cluster without one, e.g. kind): Ray's own package upload through the
            # dashboard, which stores the zip in the cluster (gcs://) under its content hash.
            uri = ray_package_uri(pkg.path)
            _say(
                f"{stack.source} has no bucket (no bucketUri): shipping the working directory "
                f"through the Ray dashboard instead, as {uri}"
            )
            env = runtime_env_for(stack, str(pkg.path), args.pip, args.uv)
            if args.dry_run:
                print(json.dumps({**env, "working_dir": uri}, indent=2, sort_keys=True))
                print(
                    f"would upload {source} through the Ray dashboard as {uri} (skipped if "
                    f"already there), then run: {shlex.join(entrypoint)}"
                )
                return Exit.SUCCEEDED
        else:
            key = where.key(WORKING_DIRS, pkg.name)
            uri = where.uri(key)
            env = runtime_env_for(stack, uri, args.pip, args.uv)
            if args.dry_run:
                print(json.dumps(env, indent=2, sort_keys=True))
                print(
                    f"would upload {source} to {uri} (skipped if already there), then run: "
                    f"{shlex.join(entrypoint)}"
                )
                return Exit.SUCCEEDED
            _upload(buckets.open_bucket(where, stack.object_store_endpoint), pkg, key, uri)
        return _submit(args, entrypoint, stack, env, address)


def _submit(
    args: argparse.Namespace,
    entrypoint: list[str],
    stack: outputs.StackOutputs,
    env: dict[str, Any],
    address: str | None,
) -> Exit:
    """Submit through the dashboard (forwarded unless `address`), follow, map the status."""
    from ray.exceptions import AuthenticationError

    token = _token(stack)
    limits = follow.Limits.from_env()
    with _dashboard(address, stack) as (addr, forwarded):
        client = _client(addr, token, limits)
        job_id: str | None = None
        try:
            job_id = str(client.submit_job(entrypoint=shlex.join(entrypoint), runtime_env=env))
            _say(f"submitted {job_id} to {addr}")
            if args.no_wait:
                _say(_follow_hint(job_id, addr, forwarded, stack))
                return Exit.SUCCEEDED
            status = follow.Follower(client, job_id, _headers(token), limits).run()
        except AuthenticationError as e:
            raise _auth_error(e, token) from None
        except follow.JobLost as e:
            raise _lost(e, _follow_hint(e.job_id, addr, forwarded, stack)) from None
        except follow.contact_errors() as e:
            # Before the job was accepted (the follow handles its own): whether a submit cut
            # mid-request reached Ray is unknown, so the line says where to look.
            why = " ".join(str(e).split())[:160] or type(e).__name__
            raise SubmitError(
                Exit.CLUSTER,
                f"lost the Ray dashboard at {addr} while submitting ({why}); if it comes back, "
                "`ray job list` shows whether the job was accepted",
            ) from None
        except RuntimeError as e:
            raise SubmitError(
                Exit.CLUSTER, f"the Ray dashboard refused: {' '.join(str(e).split())[:200]}"
            ) from None
        except KeyboardInterrupt:
            if job_id is None:
                raise
            _say(f"\ndetached from {job_id}; it keeps running.")
            _say(_follow_hint(job_id, addr, forwarded, stack))
            return Exit.DETACHED
    if status == "SUCCEEDED":
        _say(f"{job_id} SUCCEEDED")
        return Exit.SUCCEEDED
    message = ""
    with contextlib.suppress(Exception):
        message = " ".join(str(client.get_job_info(job_id).message or "").split())[:300]
    _say(f"ray-platform submit: job {job_id} {status}{': ' + message if message else ''}")
    return Exit.JOB_STOPPED if status == "STOPPED" else Exit.JOB_FAILED


def main(argv: list[str]) -> int:
    """`ray-platform submit ...` (argv without the program name)."""
    if not argv or argv[0] != "submit":
        print("usage: ray-platform submit [options] -- ENTRYPOINT...", file=sys.stderr)
        return int(Exit.USAGE)
    rest = argv[1:]
    if "--" in rest:
        cut = rest.index("--")
        opts, entrypoint = rest[:cut], rest[cut + 1 :]
    else:
        opts, entrypoint = rest, []
    ap = _parser()
    args = ap.parse_args(opts)
    if not entrypoint:
        ap.error("give the command to run after `--`, e.g. -- python train.py")
    try:
        return int(run(args, entrypoint))
    except SubmitError as e:
        print(f"ray-platform submit: {e.message}", file=sys.stderr)
        if e.hint:
            print(e.hint, file=sys.stderr)
        return int(e.code)
    except KeyboardInterrupt:
        print("ray-platform submit: interrupted before the job was submitted", file=sys.stderr)
        return int(Exit.DETACHED)
