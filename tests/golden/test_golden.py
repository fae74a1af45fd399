"""Each stack's registrations (type, name, parent, options, inputs) against
tests/golden/<stack>.yaml, so every change to what a stack registers is a diff to review.

After an intended change: `uv run --frozen pytest tests/golden --update-golden` rewrites the files
from this run; commit them with the change and say in the message why they moved.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tools.testing.pulumi_mocks import ROOT, cached_run
from tools.testing.pulumi_mocks.golden import render

GOLDEN = Path(__file__).resolve().parent
STACKS = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml")
)
MAX_DIFF_LINES = 120


@pytest.mark.parametrize("stack", STACKS)
def test_registrations_match_the_golden_file(stack: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / f"{stack}.yaml"
    rendered = render(cached_run(stack).registrations)
    if request.config.getoption("--update-golden"):
        path.write_text(rendered)
        return
    assert path.exists(), f"{path.name} missing: run pytest tests/golden --update-golden"
    golden = path.read_text()
    if rendered != golden:
        diff = list(
            difflib.unified_diff(
                golden.splitlines(),
                rendered.splitlines(),
                f"golden/{path.name}",
                "this run",
                lineterm="",
            )
        )
        shown = "\n".join(diff[:MAX_DIFF_LINES])
        more = (
            f"\n... {len(diff) - MAX_DIFF_LINES} more lines" if len(diff) > MAX_DIFF_LINES else ""
        )
        pytest.fail(
            f"stack {stack} registers something else than tests/golden/{path.name}; if intended, "
            f"rewrite it with `pytest tests/golden --update-golden` and say why in the commit:\n"
            f"{shown}{more}",
            pytrace=False,
        )


def test_every_golden_file_is_a_stack() -> None:
    stale = sorted({p.stem for p in GOLDEN.glob("*.yaml")} - set(STACKS))
    assert not stale, f"golden files of stacks that no longer exist: {stale}"
