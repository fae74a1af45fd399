"""Load on the real node: many `ray-platform submit` at once from the host, as a team would.

    uv run python -m bench.load [--jobs 20]     # after `tools/up` (root), against that cluster

Two rounds, each `--jobs` submits started together: the same directory every time (one zip:
the first submit uploads it, the others find it there), then as many different directories
(one zip each). Every job prints a marker line first and then its own number. Measured: seconds
from starting `ray-platform submit` to the job's first line on its stdout (p50, p95), to its exit,
jobs per minute over the round, how many submits uploaded (and how many found their zip already
there), and whether the dashboard answered a probe every second throughout.

The faults tier (tests/e2e/test_faults.py) runs the same rounds and asserts on them; this
script prints the figures bench/README.md records.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKER = "load-job-started"


@dataclass
class Submit:
    """One `ray-platform submit` run: what it printed, when."""

    index: int
    started: float = 0.0
    first_log: float | None = None
    ended: float | None = None
    code: int | None = None
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def to_first_log(self) -> float | None:
        return None if self.first_log is None else self.first_log - self.started

    @property
    def uploaded(self) -> bool:
        """This submit stored the zip (a racer that lost also says "uploading", then finds it
        stored by another: only the winner says "stored")."""
        return any(line.startswith("stored ") for line in self.stderr)


def job_directories(base: Path, jobs: int, *, same: bool) -> list[Path]:
    """`jobs` directories to submit: one shared by all (same) or one each, with distinct
    content (so distinct zips)."""
    if same:
        shared = base / "same"
        shared.mkdir(parents=True, exist_ok=True)
        _write_job(shared, "same")
        return [shared] * jobs
    dirs = []
    for i in range(jobs):
        d = base / f"job-{i:02d}"
        d.mkdir(parents=True, exist_ok=True)
        _write_job(d, f"distinct-{i:02d}")
        dirs.append(d)
    return dirs


def _write_job(directory: Path, tag: str) -> None:
    (directory / "job.py").write_text(
        "import os, sys\n"
        f"print({MARKER!r}, flush=True)\n"
        f"print('tag', {tag!r}, 'job', sys.argv[1], flush=True)\n"
    )


def _reader(stream: Any, sink: list[str], on_line: Callable[[str], None] | None) -> None:
    for raw in stream:
        line = raw.rstrip("\n")
        sink.append(line)
        if on_line is not None:
            on_line(line)


def run_round(
    command: Callable[[Path, Sequence[str]], tuple[list[str], dict[str, str]]],
    directories: Sequence[Path],
    timeout: float = 1800.0,
) -> list[Submit]:
    """Start one submit per directory at once; wait for all. `command(dir, entrypoint)` gives
    the argv and environment of `ray-platform submit` for that directory."""
    results = [Submit(i) for i in range(len(directories))]
    procs = []
    threads = []
    for result, directory in zip(results, directories, strict=True):
        argv, env = command(directory, ["python", "job.py", str(result.index)])
        result.started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def first(line: str, r: Submit = result) -> None:
            if r.first_log is None and MARKER in line:
                r.first_log = time.monotonic()

        threads += [
            threading.Thread(target=_reader, args=(proc.stdout, result.stdout, first)),
            threading.Thread(target=_reader, args=(proc.stderr, result.stderr, None)),
        ]
        procs.append(proc)
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for result, proc in zip(results, procs, strict=True):
        result.code = proc.wait(max(1.0, deadline - time.monotonic()))
        result.ended = time.monotonic()
    for t in threads:
        t.join(30)
    return results


class DashboardProbe:
    """GET `url` every second in a thread; counts answers and failures (the dashboard must
    answer throughout a load round)."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.url, self.headers = url, dict(headers)
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                req = urllib.request.Request(self.url, headers=self.headers)
                with urllib.request.urlopen(req, timeout=10) as resp:
                    resp.read()
                self.ok += 1
            except (urllib.error.URLError, OSError) as err:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {err}")
            self._stop.wait(1.0)

    def __enter__(self) -> DashboardProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)


def summary(results: Sequence[Submit]) -> dict[str, Any]:
    """The figures of one round."""
    firsts = sorted(r.to_first_log for r in results if r.to_first_log is not None)
    begin = min(r.started for r in results)
    end = max(r.ended or r.started for r in results)

    def pct(q: float) -> float | None:
        if not firsts:
            return None
        return round(firsts[min(len(firsts) - 1, round(q * (len(firsts) - 1)))], 1)

    return {
        "jobs": len(results),
        "succeeded": sum(1 for r in results if r.code == 0),
        "uploads": sum(1 for r in results if r.uploaded),
        "first_log_p50_s": pct(0.5),
        "first_log_p95_s": pct(0.95),
        "exit_median_s": round(statistics.median((r.ended or 0) - r.started for r in results), 1),
        "wall_s": round(end - begin, 1),
        "jobs_per_minute": round(len(results) / (end - begin) * 60, 1),
    }


def main(argv: list[str] | None = None) -> int:
    from tools.devcluster import localcluster

    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--cluster-dir", type=Path, default=None)
    parser.add_argument(
        "--outputs", type=Path, required=True, help="the stack outputs JSON `tools/up` printed"
    )
    args = parser.parse_args(argv)
    kubeconfig = localcluster.kubeconfig(args.cluster_dir)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.update(localcluster.object_store(args.cluster_dir).env())

    def command(_directory: Path, entrypoint: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        cli = str(ROOT / ".venv" / "bin" / "ray-platform")
        return [cli, "submit", "--outputs", str(args.outputs), "--", *entrypoint], env

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for same in (True, False):
            dirs = job_directories(
                Path(tmp) / ("same" if same else "distinct"), args.jobs, same=same
            )
            figures["same directory" if same else "distinct directories"] = summary(
                run_round(command, dirs)
            )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
