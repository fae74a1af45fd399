"""End to end: the real engine runs the policy pack (`--policy-pack policy`) on the `local` stack.

The engine starts the Python pack through the project's own language host (RunPlugin); a
mandatory violation fails the preview and names the rule.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto

from tools.devcluster import engine, localcluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACK = str(ROOT / "policy")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[auto.Stack]:
    root = tmp_path_factory.mktemp("policy-e2e")
    kubeconfig = localcluster.up(root / "cluster")
    try:
        eng = engine.engine(root / "state", kubeconfig)
        yield engine.local_stack(eng, engine.work_dir(root / "state"))
    finally:
        localcluster.down(root / "cluster")


def test_language_host_runs_plugins() -> None:
    # The host's own tests (RunPlugin's command line, environment, exit code) with Go.
    proc = subprocess.run(
        ["go", "test", "./..."],
        cwd=ROOT / "tools" / "go" / "pulumi-language-python",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_preview_with_the_dev_config_passes(stack: auto.Stack) -> None:
    result = stack.preview(
        color="never",
        policy_packs=[PACK],
        policy_pack_configs=[str(ROOT / "policy" / "config" / "dev.json")],
    )
    assert engine.summary_changes(result.change_summary).get("create", 0) >= 10
    # The pack ran: its advisory findings are in the preview's output.
    assert "ray-platform" in result.stdout


def test_a_mandatory_violation_fails_the_preview_with_the_rule_id(
    stack: auto.Stack, tmp_path: Path
) -> None:
    # The local stack's runtime_env pip-installs; held to prod rules that is a violation.
    config = tmp_path / "strict.json"
    config.write_text(
        json.dumps(
            {
                "all": "advisory",
                "ray-prod-runtime-env-no-installs": {
                    "enforcementLevel": "mandatory",
                    "mode": "prod",
                },
            }
        )
    )
    with pytest.raises(auto.CommandError) as info:
        stack.preview(color="never", policy_packs=[PACK], policy_pack_configs=[str(config)])
    text = str(info.value)
    assert "[mandatory]  ray-prod-runtime-env-no-installs" in text
    assert "installs packages with pip" in text
