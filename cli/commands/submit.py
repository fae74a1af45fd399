"""`ray-platform submit`: ship the working directory through the stack's bucket and run a job.

    ray-platform submit --stack dev -- python train.py

Reads the stack's outputs (cli/outputs.py), decides everything first (cli/plan.py: the
refusals, the zip's name and place, the runtime_env; `--dry-run` prints that and stops), zips
the working directory (cli/package.py, named by its content hash), uploads it to
`<bucketUri>/working_dirs/<hash>.zip` unless it is already there (cli/upload.py; a stack without
a bucket: through the Ray dashboard instead, Ray's own `gcs://` package upload), then submits the
entrypoint with the stack's runtime_env plus that `working_dir`, streams the logs and exits with
the job's status (cli/job.py, cli/follow.py). Exit codes: see `cli.errors.Exit` (and `--help`).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from cli import buckets, job, outputs, package, plan, upload
from cli.console import say
from cli.errors import CliError, Exit

SUMMARY = "run a command as a Ray job on a stack's cluster, with this directory's code"
"""This command's line in `ray-platform --help`."""

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


def parser() -> argparse.ArgumentParser:
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


def parse(argv: list[str]) -> argparse.Namespace:
    """The options before `--`, and the entrypoint after it (as `args.entrypoint`)."""
    if "--" in argv:
        cut = argv.index("--")
        opts, entrypoint = argv[:cut], argv[cut + 1 :]
    else:
        opts, entrypoint = argv, []
    ap = parser()
    args = ap.parse_args(opts)
    if not entrypoint:
        ap.error("give the command to run after `--`, e.g. -- python train.py")
    args.entrypoint = entrypoint
    return args


def run(args: argparse.Namespace) -> Exit:
    """Everything after argument parsing; raises CliError for every user-facing failure."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        # Once the job is submitted, Ctrl-C detaches (cli/job.py): this is before.
        raise CliError(Exit.DETACHED, "interrupted before the job was submitted") from None


def _run(args: argparse.Namespace) -> Exit:
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    stack = outputs.load(
        stack=args.stack, outputs_file=args.outputs, bucket=args.bucket, address=address
    )
    where = buckets.parse(stack.bucket_uri) if stack.bucket_uri else None
    wanted = plan.Wanted(
        entrypoint=tuple(args.entrypoint),
        working_dir=args.working_dir,
        pip=tuple(args.pip),
        uv=tuple(args.uv),
    )
    # Refuse before any packaging work.
    plan.refuse(stack, wanted.pip, wanted.uv)
    # The zip lives until the job is submitted: without a bucket, the client uploads it then.
    with tempfile.TemporaryDirectory(prefix="ray-platform-") as tmp:
        pkg = package.build(
            args.working_dir,
            plan.excludes(stack, args.exclude),
            args.max_size,
            Path(tmp),
            wrap=where is not None,
            check=lambda shipped: plan.check_entry_script(
                wanted.entrypoint, args.working_dir, shipped
            ),
        )
        if where is None:
            uri = plan.ray_package_uri(pkg.path)
            say(
                f"{stack.source} has no bucket (no bucketUri): shipping the working directory "
                f"through the Ray dashboard instead, as {uri}"
            )
            planned = plan.via_dashboard(stack, pkg, uri, wanted)
        else:
            planned = plan.via_bucket(stack, pkg, where, wanted)
        if args.dry_run:
            print(planned.describe())
            return Exit.SUCCEEDED
        if planned.upload_to is not None:
            to = planned.upload_to
            bucket = buckets.open_bucket(
                to.bucket, stack.object_store_endpoint, _store_credentials(stack)
            )
            upload.upload(bucket, pkg, to.key, planned.working_dir_uri)
        return job.submit_and_follow(stack, planned, address, no_wait=args.no_wait)


def _store_credentials(stack: outputs.StackOutputs) -> tuple[str, str] | None:
    """The local stack's object-store keys from its Secret in the cluster (what Ray's pods
    read), unless the environment names an endpoint or keys of its own."""
    secret, namespace = stack.object_store_secret, stack.namespace
    if not secret or not namespace or not buckets.store_credentials_wanted(os.environ):
        return None
    from cli import dashboard

    instead = f"set {' and '.join(buckets.KEY_VARIABLES)}"
    what = f"read the bucket's credentials from Secret {namespace}/{secret} (or {instead})"
    key_id, key = dashboard.secret_values(
        namespace, secret, buckets.KEY_VARIABLES, what, Exit.BUCKET, instead
    )
    say(f"bucket credentials: Secret {namespace}/{secret} (the stack's object store)")
    return key_id, key
