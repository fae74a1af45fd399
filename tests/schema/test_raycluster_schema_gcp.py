"""Every RayCluster the GKE stacks can emit — GCS FUSE on and off, Filestore on and off, dev and
prod — is valid under the pinned KubeRay CRD, nothing pruned."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from infra import kuberay_release
from infra.settings import OperatorSettings
from tests.schema.crd_schema import schema_errors
from tools.testing.pulumi_mocks import run_program, stack_config
from tools.testing.pulumi_mocks.gcp import GkeMocks

PINNED = OperatorSettings.model_validate({}).version


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return kuberay_release.raycluster_schema(PINNED)


@pytest.mark.parametrize(
    ("stack", "fuse", "filestore"),
    list(itertools.product(["gke-dev", "gke-prod"], [True, False], [True, False])),
)
def test_gke_rayclusters_are_valid_and_unpruned(
    schema: dict[str, Any], stack: str, fuse: bool, filestore: bool
) -> None:
    config = copy.deepcopy(stack_config(stack))
    config["ray-platform:gcp"]["gcsFuse"]["enabled"] = fuse
    config["ray-platform:storage"].setdefault("sharedFilesystem", {})["enabled"] = filestore
    if not filestore:
        # Shared packages live on the shared file system: without it, there are none.
        config["ray-platform:ray"].pop("sharedPackages", None)
        config["ray-platform:ray"].pop("jupyter", None)
    run = run_program(stack, config, mocks=GkeMocks())
    reg = run.one("kubernetes:ray.io/v1:RayCluster")
    obj = {k: reg.inputs[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    head = obj["spec"]["headGroupSpec"]["template"]
    volumes = {v["name"] for v in head["spec"]["volumes"]}
    # The case is the one asked for: the bucket and the share are there exactly when on.
    assert ("gcs-fuse" in volumes) is fuse
    assert ("shared" in volumes) is filestore
    assert schema_errors(obj, schema) == []
