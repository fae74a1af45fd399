"""`ray-platform image build`: bake code and dependencies into an image for a prod stack.

    ray-platform image build --stack prod --requirements requirements.lock --set-config

Builds on the stack's base image by digest (output `baseImage`, or --base) without a container
daemon (cli/image/build.py), pushes to the stack's registry (output `imageRepository`, or
--repository) with skopeo, and prints `repository:tag@sha256:…` as the last line of stdout.
`--set-config` then writes it to the stack's `ray-platform:ray.image` with `pulumi config set`,
so the next `pulumi up` runs exactly that image: never a mutable tag.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

import contract.outputs as out
from cli import outputs
from cli.errors import CliError, Exit
from cli.image import base as base_image
from cli.image import build, resolve, tools
from cli.outputs import cache_root

SUMMARY = "bake code and requirements into an image on the stack's base, push it (prod)"

EPILOG = """\
needs skopeo (pull and push; `skopeo login <registry>` first for ECR/Artifact Registry) and uv
(resolves and installs the wheels for the base's Python and glibc). Nothing of the base runs.

exit codes:
  0    built (and pushed unless --no-push); the reference is the last line of stdout
  2    bad command line, base image not usable (no Ray, no pip-freeze.txt, zstd layers),
       requirements file unreadable or not locked, a tool missing, --set-config refused
  3    stack or its outputs (imageRepository, baseImage) missing: give --repository/--base
  4    the context directory cannot be shipped (as `submit` refuses it)
  10   a registry unreachable, refusing the read or the push, or serving another digest
  11   requirements conflict with the base's pins, or cannot be resolved or downloaded
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ray-platform image build",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--stack", help="Pulumi stack whose registry and base image to use")
    src.add_argument("--outputs", type=Path, help="the stack's outputs as JSON, instead")
    ap.add_argument("--base", help="base image name:tag@sha256:… (default: output baseImage)")
    ap.add_argument(
        "--repository", help="host[:port]/path to push to (default: output imageRepository)"
    )
    ap.add_argument(
        "--requirements",
        type=Path,
        required=True,
        help="locked requirements file (name==version lines) of what the code needs",
    )
    ap.add_argument(
        "--context",
        type=Path,
        required=True,
        help="directory of code to bake in (.gitignore honoured; everything else in it goes "
        "into an image every node can pull: keep secrets and data out)",
    )
    ap.add_argument(
        "--code-dir",
        default=build.Request.code_dir,
        help="where the code goes in the image, first on PYTHONPATH (default %(default)s)",
    )
    ap.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN", help="gitignore-style"
    )
    ap.add_argument("--index-url", help="PEP 503 index for the wheels (default: uv's, PyPI)")
    ap.add_argument(
        "--find-links", action="append", default=[], metavar="DIR", help="wheels from DIR too"
    )
    ap.add_argument("--no-index", action="store_true", help="wheels from --find-links only")
    ap.add_argument("--tag", help="registry tag (default: <base tag>-<digest's first 12>)")
    ap.add_argument(
        "--plain-http",
        action="store_true",
        help="registries over plain HTTP (a local registry; default for stacks of cloud local)",
    )
    ap.add_argument("--no-push", action="store_true", help="build and print; do not push")
    ap.add_argument(
        "--set-config",
        action="store_true",
        help="write the pushed reference to the stack's ray-platform:ray.image",
    )
    ap.add_argument(
        "--project-dir",
        type=Path,
        default=Path("."),
        help="the Pulumi project holding Pulumi.<stack>.yaml, for --set-config (default .)",
    )
    return ap


def parse(argv: list[str]) -> argparse.Namespace:
    if not argv or argv[0] in ("-h", "--help"):
        ap = argparse.ArgumentParser(
            prog="ray-platform image",
            usage="ray-platform image build [options]",
            description="Application images for prod stacks.",
            epilog="subcommands:\n  build     " + SUMMARY,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        ap.parse_args(argv)
        ap.error("give a subcommand: build")
    if argv[0] != "build":
        parser().error(f"unknown subcommand {argv[0]!r} (choose from build)")
    args = parser().parse_args(argv[1:])
    if args.set_config and args.no_push:
        parser().error("--set-config writes the pushed image: it cannot go with --no-push")
    if args.tag is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", args.tag):
        parser().error(f"--tag {args.tag!r} is not a registry tag (letters, digits, _.-; ≤128)")
    if args.set_config and not args.stack:
        parser().error("--set-config needs --stack (the stack file it writes to)")
    return args


def _refuse_local_set_config(stack: str) -> None:
    """Said before anything is built: tools/up rewrites its working copy of a local stack's file
    on every run, so a value written there would be lost."""
    if stack in outputs.LOCAL_STACKS and not os.environ.get("PULUMI_BACKEND_URL"):
        raise CliError(
            Exit.USAGE,
            f"--set-config: stack {stack} is deployed by tools/up from a working copy it "
            f"rewrites on every run; build without it and pass the printed reference: "
            f"tools/up --stack {stack} --image <reference>",
        )


def _set_config(stack: str, project_dir: Path, reference: str, log: tools.Log) -> None:
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        raise CliError(Exit.USAGE, f"--set-config: {stack_file} does not exist (see --project-dir)")
    argv = [outputs.pulumi_binary(), "config", "set", "--path", "ray-platform:ray.image",
            reference, "--stack", stack]  # fmt: skip
    env, _ = outputs.local_backend(stack) or (None, None)
    try:
        proc = subprocess.run(
            argv, cwd=project_dir, env=env, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(Exit.USAGE, f"--set-config: `pulumi config set` failed: {e}") from None
    if proc.returncode != 0:
        why = tools.key_line(proc.stderr + proc.stdout)
        raise CliError(Exit.USAGE, f"--set-config: `pulumi config set` failed: {why}")
    log(f"{stack_file}: ray-platform:ray.image = {reference}")


def run(args: argparse.Namespace) -> Exit:
    log = tools.stderr_log
    if args.set_config:
        _refuse_local_set_config(args.stack)
    raw: dict[str, object] = {}
    source = "the command line"
    if args.stack or args.outputs:
        raw, source = outputs.read_raw(stack=args.stack, outputs_file=args.outputs)
    if args.set_config and outputs.text(raw, out.MODE, source, required=False) != "prod":
        raise CliError(
            Exit.USAGE,
            f"--set-config: {source} is not a prod stack (dev stacks run the generic Ray image "
            "and install packages at run time)",
        )
    base_text = args.base or outputs.text(raw, out.BASE_IMAGE, source, required=False)
    repository = args.repository or outputs.text(raw, out.IMAGE_REPOSITORY, source, required=False)
    if not base_text:
        raise CliError(Exit.OUTPUTS, f"{source} has no output {out.BASE_IMAGE!r}: give --base")
    if not repository:
        raise CliError(
            Exit.OUTPUTS, f"{source} has no output {out.IMAGE_REPOSITORY!r}: give --repository"
        )
    plain_http = args.plain_http or outputs.text(raw, out.CLOUD, source, required=False) == "local"
    request = build.Request(
        base=base_image.ImageRef.parse(base_text, "the base image"),
        repository=repository,
        context=args.context,
        requirements=args.requirements,
        code_dir=_code_dir(args.code_dir),
        index=resolve.Index(
            url=args.index_url or os.environ.get("RAY_PLATFORM_INDEX_URL") or None,
            find_links=tuple(str(Path(d).resolve()) for d in args.find_links),
            no_index=args.no_index,
        ),
        tls_verify=not plain_http,
        excludes=tuple(args.exclude),
        tag=args.tag,
    )
    built = build.build(request, cache_root(), log)
    if args.no_push:
        log(f"built {built.digest} in {built.layout} (not pushed)")
    else:
        build.push(built, tls_verify=request.tls_verify, log=log)
        log(f"pushed {built.reference}")
    if args.set_config:
        _set_config(args.stack, args.project_dir, built.reference, log)
    print(built.reference, flush=True)
    return Exit.SUCCEEDED


def _code_dir(value: str) -> str:
    if not value.startswith("/") or value.rstrip("/") in ("", "/") or ".." in value.split("/"):
        raise CliError(Exit.USAGE, f"--code-dir {value!r} must be an absolute path below /")
    return value.rstrip("/")
