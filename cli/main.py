"""`ray-platform`: the console entry point, which picks the command (cli/commands/) and turns
its CliError into one line on stderr and the exit code."""

from __future__ import annotations

import argparse
import sys

from cli.commands import COMMANDS
from cli.errors import CliError, Exit


def _parser() -> argparse.ArgumentParser:
    listed = "\n".join(f"  {name:<10}{cmd.SUMMARY}" for name, cmd in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="ray-platform",
        usage="ray-platform <command> [options]",
        description="Work with a ray-platform stack's Ray cluster.",
        epilog=f"commands:\n{listed}\n\n`ray-platform <command> --help` describes a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        ap = _parser()
        ap.parse_args(argv)  # --help prints the commands and exits 0; another option exits 2
        ap.error("give a command")
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None:
        _parser().error(f"unknown command {name!r} (choose from {', '.join(COMMANDS)})")
    args = command.parse(rest)
    try:
        return int(command.run(args))
    except CliError as e:
        print(f"ray-platform {name}: {e.message}", file=sys.stderr)
        if e.hint:
            print(e.hint, file=sys.stderr)
        return int(e.code)
    except KeyboardInterrupt:
        # A command that can be interrupted mid-way says so itself (as a CliError).
        print(f"ray-platform {name}: interrupted", file=sys.stderr)
        return int(Exit.DETACHED)
