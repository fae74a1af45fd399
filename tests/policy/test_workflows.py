"""The GitHub workflows lint clean with actionlint (built from the Go module proxy)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tools.build import ensure

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def test_actionlint_finds_nothing() -> None:
    # ensure() builds actionlint on a fresh clone; a missing Go raises BuildError (no skip).
    actionlint = ensure(["actionlint"])["actionlint"]
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert files
    proc = subprocess.run(
        [str(actionlint), "-no-color", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _workflows() -> dict[str, dict[str, object]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in WORKFLOWS.glob("*.yml")}


def test_every_workflow_grants_nothing_by_default() -> None:
    for name, wf in _workflows().items():
        assert wf.get("permissions") == {}, name


def test_pull_requests_preview_every_stack_with_the_pack_and_one_edited_comment() -> None:
    preview = _workflows()["pull-request.yml"]["jobs"]["preview"]  # type: ignore[index]
    stacks = {m["stack"] for m in preview["strategy"]["matrix"]["include"]}
    # Every stack file of the project is previewed.
    assert stacks == {p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml")} - {"local"}
    step = next(s for s in preview["steps"] if str(s.get("uses", "")).startswith("pulumi/actions"))
    assert step["uses"] == "pulumi/actions@v7"
    with_ = step["with"]
    assert with_["command"] == "preview" and with_["policyPacks"] == "policy"
    assert with_["comment-on-pr"] is True and with_["edit-pr-comment"] is True
    # Previews replace each other per PR and stack; they never share a group with deploys (a
    # newly queued run would cancel a pending deploy).
    assert preview["concurrency"]["group"].startswith("preview-")
    up: Any = _workflows()["pulumi-up.yml"]["jobs"]
    assert all(j["concurrency"]["group"].startswith("deploy-") for j in up.values())
    assert with_["pulumi-version"] == "3.274.1"


def test_no_long_lived_cloud_keys() -> None:
    text = "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "credentials_json"):
        assert key not in text
