"""How long one program run takes under the mocks, with and without compiled bytecode.

Every `pulumi preview`/`up` and every mock test runs the program in a fresh interpreter. Where
PYTHONDONTWRITEBYTECODE is set (as on this project's machines) nothing is cached between runs, so
without the bytecode `tools/setup.sh` compiles at sync time, ~800 modules (pulumi, pulumi_aws,
pydantic, ...) are compiled from source on every run. "Without" is simulated with an empty
PYTHONPYCACHEPREFIX, which hides the compiled files.

    uv run python -m bench.startup --runs 3 --stack dev
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(stack: str, env: dict[str, str]) -> float:
    code = f"from tools.testing.pulumi_mocks import run_program; run_program({stack!r})"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    base = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with_bc, without = [], []
    for _ in range(args.runs):
        with_bc.append(_run(args.stack, base))
        with tempfile.TemporaryDirectory() as empty:
            without.append(_run(args.stack, {**base, "PYTHONPYCACHEPREFIX": empty}))
    print(
        f"{args.stack} under mocks, median of {args.runs}: "
        f"with bytecode {statistics.median(with_bc):.1f} s, "
        f"without {statistics.median(without):.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
