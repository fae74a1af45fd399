"""Pure RayCluster builders: config + wiring in, dict out (no Pulumi)."""

from __future__ import annotations

from typing import Any

from components.kuberay.raycluster_inputs import Mode, RayClusterConfig
from components.kuberay.raycluster_spec import (
    RAY_AUTH_VOLUME,
    kubectl_commands,
    raycluster_spec,
    runtime_env_json,
    shared_packages_dir,
)
from components.wiring import StorageWiring
from tests.conftest import fresh_interpreter
from tests.ray_config import ray_config


def _ray(mode: Mode = "dev", **overrides: Any) -> RayClusterConfig:
    base: dict[str, Any] = {
        "workerGroups": [{"name": "gpu", "cpu": "8", "memory": "32Gi", "gpu": 2, "maxReplicas": 3}],
        "sharedPackages": ["pandas==2.2.3"],
    }
    return ray_config(mode, **{**base, **overrides})


def test_builders_load_no_pulumi() -> None:
    """The builders are plain functions: importing them must not pull in Pulumi or infra/."""
    code = (
        "import sys, components.kuberay.raycluster_spec, components.kuberay.raycluster_inputs\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'infra'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)"
    )
    done = fresh_interpreter(code)
    assert done.returncode == 0, done.stdout + done.stderr


WIRING = StorageWiring(
    service_account_name="ray", shared_claim_name="ray-shared", shared_mount_path="/mnt/shared"
)


def test_gpu_limits_and_request_equals_limit() -> None:
    spec = raycluster_spec(_ray(), WIRING, "cm")
    res = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
    assert res["requests"] == {"cpu": "8", "memory": "32Gi"}


def test_packages_dir_changes_with_the_package_list() -> None:
    a = shared_packages_dir(_ray(), "/mnt/shared")
    b = shared_packages_dir(_ray(sharedPackages=["pandas==2.2.4"]), "/mnt/shared")
    c = shared_packages_dir(_ray(sharedPackages=["pandas==2.2.3"]), "/mnt/shared")
    assert a != b and a == c


def test_no_shared_fs_means_no_shared_volume_or_pythonpath() -> None:
    spec = raycluster_spec(_ray(), StorageWiring(service_account_name="ray"), "cm")
    head = spec["headGroupSpec"]["template"]["spec"]
    assert [v["name"] for v in head["volumes"]] == ["ray-logs", "runtime-env"]
    assert "initContainers" not in head
    env = {e["name"] for e in head["containers"][0]["env"]}
    assert "PYTHONPATH" not in env and "RAY_PLATFORM_SHARED_DIR" not in env


def test_auth_disabled_leaves_auth_options_out() -> None:
    assert "authOptions" not in raycluster_spec(_ray(auth="disabled"), WIRING, "cm")


def test_kubectl_commands_name_what_the_spec_creates() -> None:
    """The commands a stack prints are built beside the spec, from the same names: `-c` is the
    head's Ray container, the Secret the one the token volume reads, the port Jupyter's."""
    ray = _ray(jupyter={"enabled": True, "port": 8890})
    head = raycluster_spec(ray, WIRING, "cm")["headGroupSpec"]["template"]["spec"]
    commands = kubectl_commands("team", ray)
    assert commands.head_shell.startswith("kubectl -n team exec -it $(kubectl -n team get pod")
    assert commands.head_shell.endswith(f" -c {head['containers'][0]['name']} -- bash")
    token = next(v["secret"] for v in head["volumes"] if v["name"] == RAY_AUTH_VOLUME)
    assert commands.auth_token == (
        f"kubectl -n team get secret {token['secretName']} "
        f"-o jsonpath='{{.data.{token['items'][0]['key']}}}' | base64 -d"
    )
    assert commands.jupyter_port_forward is not None
    assert commands.jupyter_port_forward.endswith(" 8890:8890")
    assert (
        commands.dashboard_port_forward == "kubectl -n team port-forward svc/ray-head-svc 8265:8265"
    )
    plain = kubectl_commands("team", _ray(auth="disabled"))
    assert plain.jupyter_port_forward is None and plain.auth_token is None


def test_runtime_env_json_is_sorted_and_compact() -> None:
    ray = _ray(runtimeEnv={"pip": ["b"], "env_vars": {"Z": "1", "A": "2"}})
    assert runtime_env_json(ray.runtime_env) == '{"env_vars":{"A":"2","Z":"1"},"pip":["b"]}'


def test_node_selectors_merge_wiring_and_group() -> None:
    ray = _ray(
        "prod",
        sharedPackages=[],
        workerGroups=[
            {
                "name": "cpu",
                "cpu": "1",
                "memory": "1Gi",
                "maxReplicas": 1,
                "nodeSelector": {"pool": "cpu"},
            }
        ],
    )
    wiring = StorageWiring(service_account_name="ray", node_selector={"kubernetes.io/os": "linux"})
    spec = raycluster_spec(ray, wiring, "cm")
    selector = spec["workerGroupSpecs"][0]["template"]["spec"]["nodeSelector"]
    assert selector == {"kubernetes.io/os": "linux", "pool": "cpu"}
    assert "nodeSelector" not in spec["headGroupSpec"]["template"]["spec"] or (
        spec["headGroupSpec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    )


def test_installer_backs_off_in_place_instead_of_failing_the_head() -> None:
    """A failed init container fails a restartPolicy Never pod, and KubeRay replaces a Failed
    head at once: the installer retries itself, and its termination message says why."""
    head = raycluster_spec(_ray(), WIRING, "cm")["headGroupSpec"]["template"]["spec"]
    (install,) = [c for c in head["initContainers"] if c["name"] == "install-shared-packages"]
    env = {e["name"]: e["value"] for e in install["env"]}
    assert (env["RETRY_DELAY"], env["RETRY_MAX_DELAY"]) == ("10", "300")
    assert env["TERMINATION_LOG"] == install["terminationMessagePath"] == "/dev/termination-log"
    assert install["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert head["restartPolicy"] == "Never"
