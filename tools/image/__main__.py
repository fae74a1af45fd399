"""python -m tools.image {pause,ray,push,lock,check} ... (see tools/README.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.image.common import Image, ImageError
from tools.image.pause import ensure_pause
from tools.image.ray import DEFAULT_RAY_VERSION, check_ray, ensure_ray, write_lock
from tools.image.registry import push


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.image",
        description="Build, cache and push the local node's images (no Docker). "
        "Prints `<repo>:<tag>@<digest> <layout>` on stdout.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    pause = sub.add_parser("pause", help="pause:3.10 from a static pause binary")
    pause.add_argument("--binary", type=Path, required=True, help="the static pause executable")

    ray = sub.add_parser("ray", help="the rayproject/ray:<version>-py311 stand-in (root)")
    ray.add_argument("--version", default=DEFAULT_RAY_VERSION, help="Ray version (%(default)s)")
    mode = ray.add_mutually_exclusive_group()
    mode.add_argument("--rebuild", action="store_true", help="build everything again")
    mode.add_argument(
        "--repack",
        action="store_true",
        help="write the layout again from the cached rootfs (the digest must not change)",
    )

    push_p = sub.add_parser("push", help="build if needed, then push to a registry")
    push_p.add_argument("image", choices=["ray", "pause"])
    push_p.add_argument("--registry", required=True, help="host:port of a plain-HTTP registry")
    push_p.add_argument("--version", default=DEFAULT_RAY_VERSION, help="Ray version (ray)")
    push_p.add_argument("--binary", type=Path, help="the static pause executable (pause)")

    lock = sub.add_parser("lock", help="resolve the Ray image's wheels on PyPI, write the lock")
    lock.add_argument("--version", default=DEFAULT_RAY_VERSION)

    check = sub.add_parser(
        "check", help="run the prefix/venv checks as uid 1000 in the built Ray rootfs (root)"
    )
    check.add_argument("--version", default=DEFAULT_RAY_VERSION)
    return p


def _line(image: Image) -> str:
    return f"{image.ref}@{image.digest} {image.layout}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "pause":
            print(_line(ensure_pause(args.binary)))
        elif args.command == "ray":
            print(_line(ensure_ray(args.version, rebuild=args.rebuild, repack=args.repack)))
        elif args.command == "push":
            if args.image == "pause":
                if args.binary is None:
                    raise ImageError("push pause needs --binary (the static pause executable)")
                image = ensure_pause(args.binary)
            else:
                image = ensure_ray(args.version)
            digest = push(image, args.registry)
            print(f"{args.registry}/{image.ref}@{digest}")
        elif args.command == "lock":
            print(write_lock(args.version))
        elif args.command == "check":
            print(check_ray(args.version), end="")
    except ImageError as e:
        print(f"[image] error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[image] interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
