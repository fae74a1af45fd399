"""Shared fixtures and options. The harness that runs `__main__.py` under Pulumi mocks is
`tools.testing.pulumi_mocks` (the scanner and the benchmark use it too)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.testing.pulumi_mocks import ProgramRun, cached_run

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/<stack>.yaml from this run instead of comparing with them",
    )


def fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new Python from the project root: what a module loads at import time is
    seen only there, not in this test process where everything is loaded already."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.fixture(params=["dev", "prod"])
def aws_run(request: pytest.FixtureRequest) -> Iterator[ProgramRun]:
    yield cached_run(request.param)
