"""The real program under the project's mocks, fed to the pack through the offline harness."""

from __future__ import annotations

import copy

import pytest

from policy.pack import config_for
from tests.policy.harness import from_registrations, run
from tools.testing.pulumi_mocks import cached_run, run_program, stack_config
from tools.testing.pulumi_mocks.gcp import GkeMocks


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_program_stacks_have_no_mandatory_violations(stack: str) -> None:
    mode = stack_config(stack)["ray-platform:mode"]
    report = run(from_registrations(cached_run(stack).registrations), config_for(mode))
    assert report.mandatory == set(), [f for f in report.findings if f.mandatory]


@pytest.mark.parametrize("stack", ["gke-dev", "gke-prod"])
def test_gke_stacks_have_no_mandatory_violations(stack: str) -> None:
    mode = stack_config(stack)["ray-platform:mode"]
    registrations = run_program(stack, mocks=GkeMocks()).registrations
    report = run(from_registrations(registrations), config_for(mode))
    assert report.mandatory == set(), [f for f in report.findings if f.mandatory]
    strict = run(from_registrations(registrations), {**config_for(mode), "all": "mandatory"})
    assert strict.mandatory == set(), [f for f in strict.findings if f.mandatory]


def test_dev_stack_is_clean_even_under_the_prod_rules_that_apply_to_any_mode() -> None:
    # The dev config only relaxes enforcement; run it as mandatory to see real findings.
    config = {**config_for("dev"), "all": "mandatory"}
    report = run(from_registrations(cached_run("dev").registrations), config)
    assert report.mandatory == set(), [f for f in report.findings if f.mandatory]


def test_weakened_prod_stack_trips_exactly_the_expected_rules() -> None:
    # What the settings would refuse (unpinned image, pip in prod) never reaches the engine, so
    # the weakening is applied to the registrations: the pack must hold even when code, not
    # settings, goes wrong.
    run_ = run_program("prod")
    resources = from_registrations(run_.registrations)
    weakened = []
    for r in resources:
        inputs = copy.deepcopy(dict(r.inputs))
        if r.type == "aws:s3/bucket:Bucket":
            inputs["forceDestroy"] = True
            r = type(r)(**{**r.__dict__, "inputs": inputs, "protect": False})
        elif r.type == "kubernetes:ray.io/v1:RayCluster":
            inputs["spec"]["headGroupSpec"]["serviceType"] = "NodePort"
            r = type(r)(**{**r.__dict__, "inputs": inputs})
        weakened.append(r)
    report = run(weakened, config_for("prod"))
    assert report.mandatory == {
        "s3-no-force-destroy-prod",
        "prod-stateful-protected",
        "ray-dashboard-not-exposed",
    }, [f for f in report.findings if f.mandatory]
