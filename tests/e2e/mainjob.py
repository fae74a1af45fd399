"""The main job run as a user runs it (`tools/up ACTION`: `python -m tools.devcluster.stack`, its
own process, no KUBECONFIG), for the e2e tests of the control plane and of the node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _command(
    action: str, state: Path, cluster: Path, extra: tuple[str, ...]
) -> tuple[list[str], dict[str, str]]:
    """`tools/up ACTION` with its file backend in `state` and its cluster in `cluster`, and the
    environment it runs in (no KUBECONFIG: the job starts or reuses its own cluster)."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    argv = [sys.executable, "-m", "tools.devcluster.stack", action, "--state", str(state)]
    return [*argv, "--cluster-dir", str(cluster), *extra], env


def job(
    action: str, state: Path, cluster: Path, *extra: str, timeout: float = 3000
) -> subprocess.CompletedProcess[str]:
    """One run of the main job, to its end."""
    argv, env = _command(action, state, cluster, extra)
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start(action: str, state: Path, cluster: Path, *extra: str) -> subprocess.Popen[str]:
    """`job` in the background, in a session of its own (so a test can signal the whole run,
    the engine included, as a terminal's Ctrl-C or a CI timeout would)."""
    argv, env = _command(action, state, cluster, extra)
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ok(run: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """`run`, once it is known to have exited 0 (else its last lines in the failure)."""
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-60:])
    assert run.returncode == 0, f"{run.args[3]} exited {run.returncode}:\n{tail}"
    return run


def printed_outputs(stdout: str) -> dict[str, Any]:
    """The stack outputs the job prints last (indented JSON after the engine's own output)."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    outputs: dict[str, Any] = json.loads("\n".join(lines[start:]))
    return outputs
