"""`ray-platform <command>`: the dispatch, through the installed console script, and the
exit-code table every document of the command repeats."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cli.commands import COMMANDS
from cli.commands import image as image_command
from cli.commands import submit as submit_command
from cli.errors import Exit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "ray-platform"
"""The console script `uv sync` installs from pyproject.toml's [project.scripts]."""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *argv], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_the_console_script_is_the_dispatcher() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ray-platform": "cli.main:main"}
    assert SCRIPT.is_file(), "run `uv sync`: the ray-platform script is not installed"


def test_help_lists_every_command() -> None:
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: ray-platform <command> [options]\n")
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(command.SUMMARY)}$", r.stdout, re.M), r.stdout


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["nope"], "ray-platform: error: unknown command 'nope' (choose from submit, image)"),
        ([], "ray-platform: error: give a command"),
        (["--stack", "dev"], "ray-platform: error: unrecognized arguments: --stack dev"),
    ],
)
def test_no_known_command_is_usage_and_exit_2(argv: list[str], why: str) -> None:
    r = _run(*argv)
    assert r.returncode == Exit.USAGE
    assert r.stdout == ""
    assert r.stderr == f"usage: ray-platform <command> [options]\n{why}\n"


def test_a_commands_help_is_its_own_parser() -> None:
    r = _run("submit", "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout == submit_command.parser().format_help()
    assert r.stdout.startswith(
        "usage: ray-platform submit (--stack NAME | --outputs FILE) [options] -- ENTRYPOINT..."
    )
    assert submit_command.EPILOG in r.stdout


def test_each_command_is_a_module_of_its_own() -> None:
    modules = {p.stem for p in (ROOT / "cli" / "commands").glob("*.py")} - {"__init__"}
    assert modules == set(COMMANDS)
    for name, command in COMMANDS.items():
        assert getattr(command, "__name__", None) == f"cli.commands.{name}"


def _codes(text: str, row: str) -> list[int]:
    return [int(m) for m in re.findall(row, text, re.M)]


def test_the_exit_code_table_is_the_same_everywhere() -> None:
    """cli/README.md and README.md each list every code of cli.errors.Exit, no other, in
    order: scripts branch on them. Each command's `--help` lists the codes it can end with:
    `submit` all but `image build`'s own (10, 11); `image build` its own subset."""
    codes = sorted(int(e) for e in Exit)
    image_only = [int(Exit.REGISTRY), int(Exit.REQUIREMENTS)]
    assert _codes(submit_command.EPILOG, r"^  (\d+) ") == [c for c in codes if c not in image_only]
    image_codes = _codes(image_command.EPILOG, r"^  (\d+) ")
    assert image_codes == sorted(image_codes) and set(image_only) <= set(image_codes)
    assert set(image_codes) <= set(codes)
    for doc in ("cli/README.md", "README.md"):
        assert _codes((ROOT / doc).read_text(), r"^\| (\d+) \|") == codes, doc
