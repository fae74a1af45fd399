"""Every RayCluster the program can emit is valid under the pinned KubeRay CRD, nothing pruned.

The CRD comes from the KubeRay Go module (`github.com/ray-project/kuberay/ray-operator@v<pin>`)
through the Go module proxy, checked against its go.sum hash and cached outside the repository.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from components.kuberay.raycluster_spec import raycluster_manifest
from components.wiring import StorageWiring
from infra import kuberay_release
from infra.settings import OperatorSettings
from tests.ray_config import ray_config
from tests.schema.crd_schema import pruned_fields, schema_errors
from tools.testing.pulumi_mocks import cached_run

PINNED = OperatorSettings.model_validate({}).version


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return kuberay_release.raycluster_schema(PINNED)


def _ray(**overrides: Any) -> dict[str, Any]:
    """`ray:` settings data; the mode is chosen per test case."""
    base: dict[str, Any] = {
        "workerGroups": [
            {"name": "cpu", "cpu": "4", "memory": "16Gi", "minReplicas": 0, "maxReplicas": 4},
            {
                "name": "gpu",
                "cpu": "8",
                "memory": "32Gi",
                "gpu": 1,
                "minReplicas": 0,
                "maxReplicas": 2,
                "nodeSelector": {"node.kubernetes.io/instance-type": "g5.2xlarge"},
                "rayStartParams": {"num-gpus": "1"},
            },
        ],
        "sharedPackages": ["scikit-learn==1.5.2"],
    }
    base.update(overrides)
    return base


WIRINGS = {
    "aws-full": StorageWiring(
        service_account_name="ray",
        shared_claim_name="ray-shared",
        shared_mount_path="/mnt/shared",
        bucket_uri="s3://bucket/ray/dev",
        env=(("AWS_REGION", "us-west-2"),),
    ),
    "no-storage": StorageWiring(service_account_name="ray"),
    "local-hostpath": StorageWiring(
        service_account_name="ray",
        shared_claim_name="ray-shared",
        shared_mount_path="/mnt/shared",
        init_containers=(
            {
                "name": "own-shared-dir",
                "image": "rayproject/ray:2.60.0-py311",
                "command": ["/bin/sh", "-c", "chown 1000:100 /mnt/shared"],
                "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
                "volumeMounts": [{"name": "shared", "mountPath": "/mnt/shared"}],
            },
        ),
        pod_annotations={"example.com/owner": "ml"},
        node_selector={"kubernetes.io/os": "linux"},
    ),
}
RAYS = {
    "default": _ray(),
    "auth-disabled-no-groups": _ray(auth="disabled", workerGroups=[], sharedPackages=[]),
    "prod-digest": _ray(
        image="rayproject/ray:2.60.0-py311@sha256:" + "a" * 64,
        sharedPackages=[],
        runtimeEnv={"env_vars": {"A": "b"}},
    ),
}


def _manifest(ray: dict[str, Any], wiring_name: str, mode: str) -> dict[str, Any]:
    return raycluster_manifest(
        namespace="ray",
        ray=ray_config(mode, **ray),  # type: ignore[arg-type]
        wiring=WIRINGS[wiring_name],
        runtime_env_config_map="ray-runtime-env",
        labels={"app.kubernetes.io/managed-by": "pulumi"},
    )


@pytest.mark.parametrize(
    ("ray_name", "wiring_name", "mode"),
    list(itertools.product(RAYS, WIRINGS, ["dev", "prod"])),
)
def test_builder_output_is_valid_and_unpruned(
    schema: dict[str, Any], ray_name: str, wiring_name: str, mode: str
) -> None:
    obj = _manifest(RAYS[ray_name], wiring_name, mode)
    assert schema_errors(obj, schema) == []


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_program_rayclusters_are_valid_and_unpruned(schema: dict[str, Any], stack: str) -> None:
    reg = cached_run(stack).one("kubernetes:ray.io/v1:RayCluster")
    obj = {
        "apiVersion": reg.inputs["apiVersion"],
        "kind": reg.inputs["kind"],
        "metadata": reg.inputs["metadata"],
        "spec": reg.inputs["spec"],
    }
    assert obj["apiVersion"] == "ray.io/v1" and obj["kind"] == "RayCluster"
    assert schema_errors(obj, schema) == []


def test_checker_catches_a_pruned_field(schema: dict[str, Any]) -> None:
    bad = copy.deepcopy(_manifest(_ray(), "aws-full", "dev"))
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["memoryLimit"] = "1Gi"
    bad["spec"]["workerGroupSpecs"][0]["idleTimeout"] = 30
    assert pruned_fields(bad["spec"], schema["properties"]["spec"]) == [
        ".headGroupSpec.template.spec.containers[0].memoryLimit",
        ".workerGroupSpecs[0].idleTimeout",
    ]


def test_checker_catches_a_schema_violation(schema: dict[str, Any]) -> None:
    obj = _manifest(_ray(), "no-storage", "dev")
    del obj["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    obj["spec"]["authOptions"] = {"mode": "password"}
    obj["spec"]["workerGroupSpecs"][1]["minReplicas"] = 2**40
    errors = schema_errors(obj, schema)
    assert any("is not a 'int32'" in e for e in errors), errors
    assert any("'maxReplicas' is a required property" in e for e in errors)
    assert any("'password' is not one of" in e for e in errors)


def test_crd_module_zip_matches_go_sum() -> None:
    data = kuberay_release.module_zip(PINNED)
    assert kuberay_release.go_h1_sum(data) == kuberay_release.KNOWN_SUMS[PINNED]


def test_the_native_jupyter_sidecar_survives_the_crd(schema: dict[str, Any]) -> None:
    """The 1.6.1 CRD's initContainers carry `restartPolicy` (core/v1 Container): the field that
    makes JupyterLab a native sidecar is kept by the apiserver, not pruned."""
    reg = cached_run("dev").one("kubernetes:ray.io/v1:RayCluster")
    obj = {k: reg.inputs[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    head = obj["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["initContainers"][-1]["restartPolicy"] == "Always"
    init_items = schema["properties"]["spec"]["properties"]["headGroupSpec"]["properties"][
        "template"
    ]["properties"]["spec"]["properties"]["initContainers"]["items"]
    assert init_items["properties"]["restartPolicy"] == {"type": "string"}
    assert schema_errors(obj, schema) == []
