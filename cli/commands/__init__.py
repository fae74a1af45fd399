"""The `ray-platform` commands, kubectl-plugin style: `ray-platform <command> [options]`.

Each command is a module here with its own parser and its run: SUMMARY (its line in
`ray-platform --help`), `parse(argv)` (the arguments after the command's name; argparse exits 2
on bad ones) and `run(args)`, which returns an exit code or raises CliError (cli/errors.py);
cli/main.py dispatches and prints the error. A new command is a module and a line in COMMANDS.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from cli.commands import image, submit
from cli.errors import Exit


class Command(Protocol):
    SUMMARY: str

    def parse(self, argv: list[str]) -> argparse.Namespace: ...

    def run(self, args: argparse.Namespace) -> Exit: ...


COMMANDS: dict[str, Command] = {"submit": submit, "image": image}
