"""One KubeRay version: `infra.kuberay_release.PINNED_VERSION` is the settings' default, so the
chart's version and the CRDs the program fetches; the local control plane's operator
(`tools/versions.json`) is the same release; no stack file restates it."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from infra import kuberay_release
from infra.kuberay_release import PINNED_VERSION
from infra.settings.models import OperatorSettings
from tools.testing.pulumi_mocks import ROOT, cached_run

VERSIONS = json.loads((ROOT / "tools" / "versions.json").read_text())
STACKS = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml")
)


def test_the_settings_default_is_the_pinned_release() -> None:
    assert OperatorSettings.model_validate({}).version == PINNED_VERSION


def test_the_crd_fetch_knows_the_pinned_release_checksum() -> None:
    assert PINNED_VERSION in kuberay_release.KNOWN_SUMS


def test_the_local_operator_is_the_pinned_release() -> None:
    tag = f"v{PINNED_VERSION}"
    assert VERSIONS["pairing"]["kuberay"] == tag
    tool = VERSIONS["tools"]["kuberay-operator"]
    assert tool["version"] == tag
    assert tool["go_modules"] == {kuberay_release.MODULE: tag}
    go_mod = (ROOT / "tools" / "go" / "kuberay-operator" / "go.mod").read_text()
    assert re.search(rf"^\s*{re.escape(kuberay_release.MODULE)} {re.escape(tag)}\b", go_mod, re.M)


@pytest.mark.parametrize("stack", STACKS)
def test_no_stack_file_restates_the_version(stack: str) -> None:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert "version" not in (config.get("ray-platform:operator") or {})


@pytest.mark.parametrize("stack", STACKS)
def test_the_chart_installs_the_pinned_release(stack: str) -> None:
    charts = [
        r for r in cached_run(stack).registrations if r.type == "kubernetes:helm.sh/v3:Release"
    ]
    for chart in charts:
        if chart.name == "kuberay-crds":  # the CRDs' own chart: the release + their digest
            assert chart.inputs["version"].startswith(f"{PINNED_VERSION}+crds.")
        else:
            assert chart.inputs["version"] == PINNED_VERSION
