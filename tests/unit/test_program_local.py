"""The real program for Pulumi.local.yaml under mocks: hostPath shared volume, dev mode."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from infra.settings import SettingsError
from tools.testing.pulumi_mocks import cached_run, run_program, stack_config


def test_local_uses_no_cloud_and_the_ambient_kubeconfig() -> None:
    run = cached_run("local")
    assert not [r for r in run.registrations if r.type.startswith("aws:")]
    assert run.calls == []
    provider = run.one("pulumi:providers:kubernetes")
    # No kubeconfig path or content lands in state: $KUBECONFIG decides, at run time.
    assert provider.inputs.get("kubeconfig", "") == ""


def test_the_kubeconfig_of_the_run_never_lands_in_the_providers_inputs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """tools/up runs the engine with KUBECONFIG set; the Kubernetes SDK copies an unset
    `kubeconfig` from it into the provider's inputs, so the path ended in the state and every
    refresh after `tools/up down` failed on it. The registered inputs hold neither the path
    nor the file's contents: the provider resolves $KUBECONFIG at run time."""
    path = tmp_path / "control-plane" / "kubeconfig"
    path.parent.mkdir()
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: only-here\n")
    monkeypatch.setenv("KUBECONFIG", str(path))
    run = run_program("local")
    provider = run.one("pulumi:providers:kubernetes")
    assert provider.inputs.get("kubeconfig", "") == ""
    for reg in run.registrations:
        text = json.dumps(reg.inputs, default=str)
        assert str(tmp_path) not in text and "only-here" not in text, reg.name


def test_a_kubeconfig_the_stack_names_is_used_as_is() -> None:
    config = copy.deepcopy(stack_config("local"))
    config["ray-platform:local"].update(kubeconfig="~/.kube/kind", context="kind-ray")
    provider = run_program("local", config).one("pulumi:providers:kubernetes").inputs
    assert (provider["kubeconfig"], provider["context"]) == ("~/.kube/kind", "kind-ray")


def _owner_job_name(config: dict[str, Any] | None = None) -> str:
    run = cached_run("local") if config is None else run_program("local", config)
    return str(run.one("kubernetes:batch/v1:Job").inputs["metadata"]["name"])


def test_the_owner_job_is_renamed_by_what_replaces_it() -> None:
    """A Job's pod template is immutable: a new image or host path replaces the Job. Under one
    fixed name that replace deleted first and, the provider not waiting for a Job's delete,
    created onto the old Job still terminating (an apply conflict, `up` failed: CI, local-prod).
    The name follows the spec: a replace gets a new name (create, then delete), the same spec
    keeps it (a re-run after an interrupted create finds the same Job)."""
    name = _owner_job_name()
    assert re.fullmatch(r"own-shared-dir-[0-9a-f]{10}", name), name
    assert _owner_job_name(copy.deepcopy(stack_config("local"))) == name
    for section, key, value in (
        ("ray-platform:ray", "image", "rayproject/ray:2.60.0-py311-cpu"),
        ("ray-platform:local", "hostPath", "/srv/ray-shared"),
    ):
        config = copy.deepcopy(stack_config("local"))
        config[section][key] = value
        assert _owner_job_name(config) != name, key


def test_local_shared_volume_is_hostpath_rwx() -> None:
    run = cached_run("local")
    pv = run.one("kubernetes:core/v1:PersistentVolume").inputs["spec"]
    assert pv["hostPath"] == {"path": "/var/lib/ray-platform/shared", "type": "DirectoryOrCreate"}
    assert pv["accessModes"] == ["ReadWriteMany"]
    assert pv["persistentVolumeReclaimPolicy"] == "Retain"
    assert "mountOptions" not in pv


def test_local_operator_is_external_but_crds_are_managed() -> None:
    run = cached_run("local")
    (crds,) = run.of_type("kubernetes:helm.sh/v3:Release")  # the CRDs' release, no operator chart
    assert crds.name == "kuberay-crds"
    assert crds.urn in run.one("kubernetes:ray.io/v1:RayCluster").dependencies


def test_local_hostpath_is_handed_to_ray_by_a_job_outside_the_ray_namespace() -> None:
    """The chown needs root, which Pod Security `restricted` never allows: it runs once, as a
    Job in a namespace of its own, and Ray pods wait for the directory to become theirs."""
    run = cached_run("local")
    prep = run.one("kubernetes:core/v1:Namespace", "shared-owner-ns").inputs["metadata"]
    assert prep["name"] == "ray-prep"
    assert prep["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    job = run.one("kubernetes:batch/v1:Job").inputs
    assert job["metadata"]["namespace"] == "ray-prep"
    pod = job["spec"]["template"]["spec"]
    assert "chown 1000:100 /shared" in pod["containers"][0]["command"][-1]
    assert pod["volumes"] == [
        {
            "name": "shared",
            "hostPath": {"path": "/var/lib/ray-platform/shared", "type": "DirectoryOrCreate"},
        }
    ]
    ray_ns = run.one("kubernetes:core/v1:Namespace", "ray-namespace").inputs["metadata"]
    assert ray_ns["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = run.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]
    for pod in pods:
        first = pod["initContainers"][0]
        assert first["name"] == "wait-for-shared-dir"
        assert "[ -w /mnt/shared ]" in first["command"][-1]
        assert first["securityContext"]["runAsNonRoot"] is True


def test_local_outputs() -> None:
    out = cached_run("local").outputs
    assert out["cloud"] == "local" and out["mode"] == "dev"
    assert out["sharedMountPath"] == "/mnt/shared"
    assert "bucketUri" not in out and "irsaRoleArn" not in out
    assert json.loads(out["runtimeEnv"])["pip"] == ["requests==2.32.3"]


def _with_object_store() -> dict[str, Any]:
    config = copy.deepcopy(stack_config("local"))
    config["ray-platform:storage"]["artifactBucket"] = {"enabled": True, "prefix": "ray/local"}
    config["ray-platform:local"]["objectStore"] = {
        "endpoint": "http://127.0.0.1:9000",
        "bucket": "ray",
        "accessKeyId": "minio-user",
        "secretAccessKey": "minio-secret-0123456789",
    }
    return config


def test_local_bucket_is_an_s3_compatible_server_boto3_in_ray_reaches() -> None:
    run = run_program("local", _with_object_store())
    assert run.outputs["bucketUri"] == "s3://ray/ray/local"
    secret = run.one("kubernetes:core/v1:Secret", "object-store-credentials").inputs
    assert secret["metadata"]["name"] == "ray-object-store"
    spec = run.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]
    for pod in pods:
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://127.0.0.1:9000"
        assert env["RAY_PLATFORM_BUCKET_URI"]["value"] == "s3://ray/ray/local"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[name]["valueFrom"]["secretKeyRef"] == {
                "name": "ray-object-store",
                "key": name,
            }
        # The secret never lands in a pod spec.
        assert "minio-secret-0123456789" not in json.dumps(pod)


def test_local_bucket_without_a_server_is_a_settings_error() -> None:
    config = copy.deepcopy(stack_config("local"))
    config["ray-platform:storage"]["artifactBucket"] = {"enabled": True}
    config["ray-platform:local"].pop("objectStore", None)
    with pytest.raises(SettingsError, match=r"needs ray-platform:local.objectStore"):
        run_program("local", config)


def test_closed_egress_still_reaches_the_local_object_store() -> None:
    config = _with_object_store()
    config.setdefault("ray-platform:kubernetes", {})["networkPolicy"] = {"restrictEgress": True}
    egress = (
        run_program("local", config)
        .one("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        .inputs["spec"]["egress"]
    )
    assert {"ports": [{"protocol": "TCP", "port": 9000}]} in egress
    assert {"ports": [{"protocol": "TCP", "port": 6443}]} in egress


def test_closed_egress_opens_the_api_servers_own_port() -> None:
    """KubeRay's autoscaler sidecar calls the API server; with egress closed the policy must
    name the endpoints' port (local.apiServerPort), not the Service's 443 nor kind's 6443."""
    config = _with_object_store()
    config.setdefault("ray-platform:kubernetes", {})["networkPolicy"] = {"restrictEgress": True}
    config["ray-platform:local"]["apiServerPort"] = 55005
    egress = (
        run_program("local", config)
        .one("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        .inputs["spec"]["egress"]
    )
    assert {"ports": [{"protocol": "TCP", "port": 55005}]} in egress
    assert {"ports": [{"protocol": "TCP", "port": 6443}]} not in egress
