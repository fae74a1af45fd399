"""tools/preview_targets.py: from a `pulumi preview --json` of the real program's URNs, the image
repository's subtree to target before an image is pushed (main.yml's prod deploy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_component_layout import type_tokens
from tools import preview_targets
from tools.testing.pulumi_mocks import ProgramRun, cached_run


def _preview(run: ProgramRun, op: str = "create", **ops: str) -> list[dict[str, Any]]:
    """A preview's steps, shaped as `pulumi preview --json` writes them, for every resource the
    program registers (plus the stack); `ops` sets one resource's op by name."""
    stack = {
        "op": op,
        "urn": "urn:pulumi:prod::ray-platform::pulumi:pulumi:Stack::ray-platform-prod",
    }
    return [stack] + [
        {"op": ops.get(r.name, op), "urn": r.urn, "newState": {"type": r.type}}
        for r in run.registrations
    ]


def _subtree(run: ProgramRun) -> list[str]:
    return [
        r.urn
        for r in run.registrations
        if any(
            t in preview_targets.type_chain(r.urn) for t in preview_targets.IMAGE_REPOSITORY_TYPES
        )
    ]


def test_the_defaults_are_the_image_repository_components() -> None:
    registered = {t for t in type_tokens() if t.endswith(":ImageRepository")}
    assert registered == set(preview_targets.IMAGE_REPOSITORY_TYPES)


@pytest.mark.parametrize(
    ("stack", "children"),
    [
        ("prod", {"app-image-key", "app-image-repository", "app-image-lifecycle"}),
        (
            "gke-prod",
            {
                "app-image-keyring",
                "app-image-key",
                "app-image-key-ar-agent",
                "app-image-agent",  # the service agent the key grant names: created first
                "app-image-repository",
            },
        ),
    ],
)
def test_a_first_deploy_targets_the_repository_and_its_children_only(
    stack: str, children: set[str]
) -> None:
    run = cached_run(stack)
    targets = preview_targets.subtree_targets(_preview(run), preview_targets.IMAGE_REPOSITORY_TYPES)
    by_urn = {r.urn: r for r in run.registrations}
    assert {by_urn[u].name for u in targets} == {"app-image", *children}
    # Not the RayCluster, which depends on the repository, nor the providers (the engine adds
    # those to a targeted update itself).
    assert not any("RayCluster" in u or "pulumi:providers:" in u for u in targets)


def test_an_unchanged_repository_is_not_targeted_a_changed_one_is() -> None:
    run = cached_run("prod")
    types = preview_targets.IMAGE_REPOSITORY_TYPES
    assert preview_targets.subtree_targets(_preview(run, op="same"), types) == []
    # A change elsewhere in the stack is the full `up`'s business.
    elsewhere = _preview(run, op="same", **{"ray-raycluster": "update"})
    assert preview_targets.subtree_targets(elsewhere, types) == []
    changed = _preview(run, op="same", **{"app-image-lifecycle": "update"})
    assert preview_targets.subtree_targets(changed, types) == _subtree(run)


def test_a_dev_stack_has_nothing_to_target() -> None:
    run = cached_run("dev")
    assert (
        preview_targets.subtree_targets(_preview(run), preview_targets.IMAGE_REPOSITORY_TYPES) == []
    )


def test_the_command_prints_one_urn_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = cached_run("prod")
    preview = tmp_path / "preview.json"
    preview.write_text(json.dumps({"steps": _preview(run), "changeSummary": {"create": 60}}))
    assert preview_targets.main([str(preview)]) == 0
    assert capsys.readouterr().out.splitlines() == _subtree(run)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"steps": {"a": 1}}'])
def test_what_is_not_a_preview_is_refused(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preview = tmp_path / "preview.json"
    preview.write_text(text)
    assert preview_targets.main([str(preview)]) == 2
    assert "not a `pulumi preview --json` result" in capsys.readouterr().err
