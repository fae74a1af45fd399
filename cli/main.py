"""`ray-platform`: the console entry point (subcommands live in their own modules)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from cli import submit

    return submit.main(sys.argv[1:] if argv is None else argv)
