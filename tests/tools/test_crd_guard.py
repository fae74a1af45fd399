"""tools/crd_guard.py: a deploy that would delete the KubeRay CRDs (and with them every Ray
object in the cluster) stops first — in the workflow from the preview's plan, in tools/up from
the state of a stack an earlier version deployed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import crd_guard

STACK = "urn:pulumi:dev::ray-platform::"
OPERATOR = "ray-platform:kuberay:KubeRayOperator"
EARLIER = f"{OPERATOR}$kubernetes:yaml/v2:ConfigGroup"
CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def _crd_urn(plural: str) -> str:
    return f"{STACK}{EARLIER}${CRD}::kuberay-crds:{plural}.ray.io"


RELEASE_URN = f"{STACK}{OPERATOR}$kubernetes:helm.sh/v3:Release::kuberay-crds"
OPERATOR_RELEASE_URN = f"{STACK}{OPERATOR}$kubernetes:helm.sh/v3:Release::kuberay-release"


def test_a_plan_deleting_crds_or_replacing_their_release_is_refused() -> None:
    steps = [
        {"op": "create", "urn": RELEASE_URN},
        {"op": "delete", "urn": _crd_urn("rayclusters")},
        {"op": "same", "urn": _crd_urn("rayjobs")},
        {"op": "replace", "urn": RELEASE_URN},
        {"op": "delete", "urn": OPERATOR_RELEASE_URN},  # the operator: no CRD goes with it
        {"op": "delete", "urn": f"{STACK}{EARLIER}::kuberay-crds"},  # the group itself
    ]
    assert crd_guard.crd_deletions(steps) == [
        "the plan would delete CustomResourceDefinition kuberay-crds:rayclusters.ray.io",
        "the plan would replace Release kuberay-crds",
    ]
    assert crd_guard.crd_deletions([{"op": "update", "urn": RELEASE_URN}]) == []
    # Retained (prod): the state forgets it, the cluster keeps it; any CRD version.
    retained = {"op": "delete", "urn": _crd_urn("rayjobs"), "oldState": {"retainOnDelete": True}}
    assert crd_guard.crd_deletions([retained]) == []
    beta = f"{STACK}kubernetes:apiextensions.k8s.io/v1beta1:CustomResourceDefinition::x"
    assert crd_guard.crd_deletions([{"op": "delete", "urn": beta}]) == [
        "the plan would delete CustomResourceDefinition x"
    ]


def test_the_command_exits_1_with_one_line_per_crd_and_0_on_a_safe_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "preview.json"
    plan.write_text(json.dumps({"steps": [{"op": "delete", "urn": _crd_urn("rayjobs")}]}))
    assert crd_guard.main([str(plan)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "kuberay-crds:rayjobs.ray.io" in err[0] and "README" in err[0]
    plan.write_text(json.dumps({"steps": [{"op": "update", "urn": RELEASE_URN}]}))
    assert crd_guard.main([str(plan)]) == 0
    plan.write_text("not json")
    assert crd_guard.main([str(plan)]) == 2
    assert str(plan) in capsys.readouterr().err


def test_a_state_from_the_earlier_version_is_found_by_its_crds() -> None:
    resources = [
        {"urn": _crd_urn("rayclusters"), "type": CRD, "parent": f"{STACK}{EARLIER}::kuberay-crds"},
        {"urn": RELEASE_URN, "type": "kubernetes:helm.sh/v3:Release", "parent": "x"},
    ]
    assert crd_guard.earlier_crds(resources) == ["kuberay-crds:rayclusters.ray.io"]
    assert crd_guard.earlier_crds(resources[1:]) == []


def test_the_deploy_workflow_runs_the_guard_before_its_up() -> None:
    """The guard is only worth what calls it: the workflow previews, checks, then deploys."""
    workflow = (Path(__file__).resolve().parents[2] / ".github/workflows/pulumi-up.yml").read_text()
    guard = workflow.index("python -m tools.crd_guard")
    assert guard < workflow.index("- name: pulumi up with the policy pack")
    assert "pulumi preview --json" in workflow[:guard]
