"""The outside tools `image build` drives (skopeo, uv): found on PATH, run with their output
captured, and a failure turned into one CliError line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

from cli.errors import CliError, Exit

Log = Callable[[str], None]
"""Progress, one line at a time (stderr: stdout carries only the result)."""

INSTALL = {
    "skopeo": "apt-get install -y skopeo (Debian/Ubuntu)",
    "uv": "pip install uv, or see https://docs.astral.sh/uv/",
}


def stderr_log(line: str) -> None:
    print(f"[image] {line}", file=sys.stderr, flush=True)


def require(name: str, why: str) -> str:
    found = shutil.which(name)
    if found is None:
        # uv also comes with the project's own environment: the interpreter's bin.
        beside = os.path.join(os.path.dirname(sys.executable), name)
        if os.access(beside, os.X_OK):
            return beside
        raise CliError(
            Exit.USAGE, f"`{name}` is not on PATH ({why}); install it: {INSTALL.get(name, name)}"
        )
    return found


_NOISE = re.compile(r"^\s*$|^\s*(Resolved|Prepared|Installed|Audited|Using) ")


def key_line(text: str) -> str:
    """The line of a tool's output that says what went wrong (its error line, else its last)."""
    lines = [ln.strip() for ln in text.splitlines() if not _NOISE.match(ln)]
    # uv: "error: No solution found…" then "cause: Because …", the line that names names.
    causes = [ln.removeprefix("cause:").strip() for ln in lines if ln.startswith("cause:")]
    errors = [ln for ln in lines if re.match(r"^(error|fatal|FATA|\u00d7|ERRO)", ln, re.I)]
    chosen = (causes or errors or lines or ["(no output)"])[0 if causes or errors else -1]
    return re.sub(r"\s+", " ", chosen)[:400]


def run(
    argv: Sequence[str],
    *,
    what: str,
    code: Exit,
    env: Mapping[str, str] | None = None,
    explain: Callable[[str], str | None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure, CliError(code, "<what> failed: <its key line>") — or the line
    `explain` makes of its whole output, when it recognises the failure."""
    try:
        proc = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
        )
    except OSError as e:
        raise CliError(code, f"{what} failed: {e}") from None
    if proc.returncode != 0:
        output = proc.stderr + "\n" + proc.stdout
        message = (explain(output) if explain else None) or f"{what} failed: {key_line(output)}"
        raise CliError(code, message)
    return proc
