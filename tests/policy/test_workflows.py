"""The GitHub workflows lint clean with actionlint (built from the Go module proxy)."""

from __future__ import annotations

import re
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
    # Every stack file of the project is previewed, but those tools/up deploys onto the local
    # node (a CI runner has no such cluster; the e2e tiers run them).
    local = {"local", "local-prod"}
    assert stacks == {p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml")} - local
    step = next(s for s in preview["steps"] if str(s.get("uses", "")).startswith("pulumi/actions"))
    assert str(step["uses"]).split("@")[0] == "pulumi/actions"
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


# `uses: owner/repo[/path]@<full commit SHA> # <tag>`: a tag can be moved to other code, a commit
# cannot; the comment says which release the SHA is (and lets Dependabot/Renovate update it).
PINNED = re.compile(
    r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}\s+#\s+v\d+(?:\.\d+){0,2}\s*$"
)
LOCAL = re.compile(r"^\s*(?:-\s+)?uses:\s+\./\.github/workflows/[\w.-]+\.ya?ml\s*$")


def test_every_action_is_pinned_to_a_commit_sha_with_its_tag() -> None:
    """Jobs here hold `id-token: write` and deploy roles: an action referenced by a tag runs
    whatever its owner (or whoever takes over the tag) pushes under it next."""
    lines = [
        (p.name, n, line)
        for p in sorted(WORKFLOWS.glob("*.yml"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.match(r"^\s*(?:-\s+)?uses:", line)
    ]
    assert lines
    unpinned = [f"{f}:{n}: {line.strip()}" for f, n, line in lines if not PINNED.match(line)]
    unpinned = [u for u in unpinned if not LOCAL.match(u.split(": ", 1)[1])]
    assert unpinned == []
    # Every `uses` the YAML holds is one of the lines checked above (none hidden in flow style).
    parsed = [
        str(u)
        for wf in _workflows().values()
        for job in wf["jobs"].values()  # type: ignore[attr-defined]
        for u in [job.get("uses"), *(s.get("uses") for s in job.get("steps", []))]
        if u
    ]
    assert len(parsed) == len(lines)


def test_a_sha_pin_means_one_action_version_everywhere() -> None:
    """The same action is pinned to the same commit in every workflow (one bump, one place)."""
    seen: dict[str, set[str]] = {}
    for p in WORKFLOWS.glob("*.yml"):
        for line in p.read_text().splitlines():
            m = re.match(r"^\s*(?:-\s+)?uses:\s+([\w./-]+)@([0-9a-f]{40})", line)
            if m:
                seen.setdefault(m[1], set()).add(m[2])
    assert seen and all(len(shas) == 1 for shas in seen.values()), seen


def test_prod_deploys_the_image_it_builds_by_digest_and_dev_builds_none() -> None:
    """main.yml: prod builds the app image and hands its digest to `pulumi up`, in this order:
    the image repository (a targeted `up` when new), the registry login, the build with
    --set-config (its last line checked to be a digest of the stack's repository), the `up`."""
    main: Any = _workflows()["main.yml"]["jobs"]
    assert main["prod"]["with"]["build-image"] is True
    assert "build-image" not in main["dev"]["with"]
    steps: list[dict[str, Any]] = _workflows()["pulumi-up.yml"]["jobs"]["up"]["steps"]  # type: ignore[index]
    runs = [str(s.get("run", "")) for s in steps]

    def index(text: str) -> int:
        (found,) = [i for i, run in enumerate(runs) if text in run]
        return found

    registry = index("python -m tools.preview_targets")
    login = index("skopeo login")
    build = index("ray-platform image build")
    up = next(i for i, s in enumerate(steps) if s.get("with", {}).get("command") == "up")
    assert registry < login < build < up == len(steps) - 1
    assert "--target" in runs[registry] and "pulumi preview --json" in runs[registry]
    assert "--set-config" in runs[build] and "@sha256:[0-9a-f]{64}" in runs[build]
    # The command's own tag (base tag + digest prefix): an unchanged app keeps its reference, so
    # a deploy that changes nothing else does not recreate the prod RayCluster.
    assert "--tag" not in runs[build] and "GITHUB_RUN_ID" not in runs[build]
    # The targeted create of the repository runs without the pack (its stack rules would see
    # every other resource as an empty skipped create); the previews and the full up have it.
    targeted = [ln for ln in runs[registry].splitlines() if ln.strip().startswith("pulumi up")]
    assert len(targeted) == 1 and "targets" in targeted[0] and "policy" not in targeted[0]
    for step in (steps[registry], steps[login], steps[build]):
        assert "inputs.build-image" in str(step["if"])
