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
    # skopeo (logrus): time="…" level=fatal msg="<what went wrong>"
    fatal = [m[1] for ln in lines if (m := re.search(r'level=fatal msg="(.*)"\s*$', ln))]
    chosen = (fatal or causes or errors or lines or ["(no output)"])[
        0 if fatal or causes or errors else -1
    ]
    return re.sub(r"\s+", " ", chosen)[:400]


_UV_KEPT = re.compile(
    r"^UV_(CACHE_DIR|HTTP_TIMEOUT|NATIVE_TLS|INDEX_\w+_(USERNAME|PASSWORD)|"
    r"CONCURRENT_\w+|NO_PROGRESS|OFFLINE)$"
)


def tool_env() -> dict[str, str]:
    """The environment tools run with: the caller's, less uv's settings variables (a machine's
    UV_COMPILE_BYTECODE, UV_INDEX_URL, UV_EXCLUDE_NEWER… would change the image and `--no-config`
    does not ignore them); its cache, timeouts, TLS choice and index credentials stay."""
    return {k: v for k, v in os.environ.items() if not k.startswith("UV_") or _UV_KEPT.match(k)}


def run_bytes(argv: Sequence[str], *, what: str, code: Exit) -> bytes:
    """`run` for a tool whose stdout is data (a manifest's exact bytes)."""
    try:
        proc = subprocess.run(
            list(argv), env=tool_env(), stdin=subprocess.DEVNULL, capture_output=True,
            timeout=TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(code, f"{what} failed: {e}") from None
    if proc.returncode != 0:
        output = (proc.stderr + proc.stdout).decode(errors="replace")
        raise CliError(code, f"{what} failed: {key_line(output)}")
    return proc.stdout


TIMEOUT = 3600.0
"""Seconds any one tool run may take (a multi-GB base over a slow link stays well inside)."""


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
            env=dict(env) if env is not None else tool_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CliError(code, f"{what} failed: {e}") from None
    if proc.returncode != 0:
        output = proc.stderr + "\n" + proc.stdout
        message = (explain(output) if explain else None) or f"{what} failed: {key_line(output)}"
        raise CliError(code, message)
    return proc
