"""Pure builders for the KubeRay RayCluster custom resource: config + wiring in, dict out.

No Pulumi, no cloud SDK: tests call these directly and validate the result against the CRD schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from components.kuberay.image import RAY_GID, RAY_UID
from components.kuberay.jupyter import TOKEN_DIGEST_ANNOTATION, jupyter_container, token_volume
from components.kuberay.raycluster_inputs import (
    GroupResources,
    JupyterConfig,
    RayClusterConfig,
    WorkerGroup,
)
from components.wiring import SHARED_VOLUME, StorageWiring

RUNTIME_ENV_DIR = "/etc/ray-platform"
RUNTIME_ENV_FILE = "runtime_env.json"
RAY_TMP_DIR = "/tmp/ray"
RAY_LOGS_VOLUME = "ray-logs"
"""The emptyDir at /tmp/ray, under KubeRay's own name for it (`common.RayLogVolumeName`). On the
head KubeRay mounts the volume of that name into the autoscaler sidecar (its `monitor.log` and
events must reach the head's dashboard and drivers); it adds no volume of its own to a container
that already mounts /tmp/ray, but under any other name the autoscaler would get a second,
separate emptyDir."""
RUNTIME_ENV_VOLUME = "runtime-env"
PACKAGES_SUBDIR = "python-packages"
PACKAGES_VENV = "venv"
"""The installer's virtualenv inside a packages directory; `site-packages` beside it is a symlink
into it (`venv/lib/python3.X/site-packages`), so PYTHONPATH needs no Python version."""
DASHBOARD_PORT = 8265
HEAD_CONTAINER = "ray-head"
CLIENT_PORT = 10001
GCS_PORT = 6379
JUPYTER_TOKEN_KEY = "token"
"""The key of the Jupyter token in its Secret."""

TERMINATION_LOG = "/dev/termination-log"
"""Where the kubelet reads a container's termination message (its default path)."""
INSTALL_RETRY_DELAY = 10
INSTALL_RETRY_MAX_DELAY = 300
"""The installer's backoff between failed attempts, in seconds: doubling from the first to the
cap (the kubelet's own crash-loop backoff runs 10 s to 5 min)."""

# A failed install must not fail the container: the head pod has restartPolicy Never, so a failed
# init container fails the pod, and KubeRay deletes a Failed head and creates a new one at once
# (raycluster_controller.go, shouldDeletePod) — a new head every few seconds, each downloading
# the packages again. So the script retries in place with exponential backoff, saying why on
# stderr (`kubectl logs -c install-shared-packages`) and in its termination message. A fixed
# package set is a new RayCluster spec: KubeRay then replaces this pod (upgradeStrategy
# Recreate), and a transient failure (the index unreachable) heals at the next attempt.
# `set -e` does not act inside a function called as a condition: each step returns its status.
INSTALL_SCRIPT = """set -eu
if [ -f "$TARGET/.complete" ]; then echo "shared packages already in $TARGET"; exit 0; fi
tmp="$TARGET.tmp.$HOSTNAME"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 143' INT TERM
install_once() {
  rm -rf "$tmp" && mkdir -p "$tmp" || return
  printf '%s\\n' "$REQUIREMENTS" > "$tmp/requirements.txt" || return
  # The image's packages stay visible and pinned: pip installs only what is missing, so nothing
  # on PYTHONPATH shadows (or silently upgrades) Ray's own dependencies.
  # (Local builds such as torch 2.5.1+cu121 cannot be constraints pip resolves; they stay
  # visible, so pip keeps them all the same.)
  python -m pip list --disable-pip-version-check --format=freeze | grep -v '+' \\
    > "$tmp/image-packages.txt" || true
  python -m venv --without-pip --system-site-packages "$tmp/venv" || return
  "$tmp/venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check \\
    -c "$tmp/image-packages.txt" -r "$tmp/requirements.txt" || return
  site=$(cd "$tmp/venv" && ls -d lib/python*/site-packages) || return
  ln -s "venv/$site" "$tmp/site-packages" || return
  touch "$tmp/.complete" || return
  mv -T "$tmp" "$TARGET" 2>/dev/null || rm -rf "$tmp"
}
attempt=1
delay=$RETRY_DELAY
until install_once; do
  status=$?
  why="shared packages: attempt $attempt failed (exit $status), retrying in ${delay}s;"
  why="$why pip's output in this container's log says why. Fix ray.sharedPackages (or the"
  why="$why package index) and run pulumi up: the new package set replaces this pod."
  { printf '%s\\n' "$why" > "$TERMINATION_LOG"; } 2>/dev/null || true
  echo "$why" >&2
  sleep "$delay" & wait $!
  attempt=$((attempt + 1))
  delay=$((delay * 2))
  if [ "$delay" -gt "$RETRY_MAX_DELAY" ]; then delay=$RETRY_MAX_DELAY; fi
done
echo "installed shared packages into $TARGET"
"""


def runtime_env_json(runtime_env: Mapping[str, Any]) -> str:
    """The stack's default runtime_env as `ray job submit --runtime-env-json` takes it."""
    return json.dumps(runtime_env, sort_keys=True, separators=(",", ":"))


def head_service_name(cluster_name: str) -> str:
    """The ClusterIP Service KubeRay creates for the head (dashboard, Jobs API, client)."""
    return f"{cluster_name}-head-svc"


def auth_token_secret_name(cluster_name: str) -> str:
    """KubeRay (token auth) keeps the cluster's token in a Secret named like the RayCluster."""
    return cluster_name


@dataclass(frozen=True)
class KubectlCommands:
    """The kubectl commands a stack prints for people, built here beside the names they use (the
    head Service, the head container, the token Secret, the pod labels KubeRay sets)."""

    dashboard_port_forward: str
    """Makes the dashboard / Jobs API local (`ray-platform` checks the stack's against this)."""
    head_shell: str
    """A shell in the head's Ray container: the guide's "SSH onto the head node"."""
    jupyter_port_forward: str | None
    """With Jupyter: a port-forward to the head pod (JupyterLab listens on its loopback only)."""
    auth_token: str | None
    """With token auth: prints the cluster's Ray auth token."""


def kubectl_commands(namespace: str, ray: RayClusterConfig) -> KubectlCommands:
    head_pod = (
        f"$(kubectl -n {namespace} get pod -o name "
        f"-l ray.io/cluster={ray.name},ray.io/node-type=head "
        # During a pod recreation the old head may still be listed (a terminating pod stays
        # Running): the newest running one.
        "--field-selector=status.phase=Running --sort-by=.metadata.creationTimestamp | tail -n 1)"
    )
    jupyter = None
    if ray.jupyter is not None:
        port = ray.jupyter.port
        # To the pod, not the Service: JupyterLab listens on the pod's loopback only.
        jupyter = f"kubectl -n {namespace} port-forward {head_pod} {port}:{port}"
    token = None
    if ray.auth == "token":
        token = (
            f"kubectl -n {namespace} get secret {auth_token_secret_name(ray.name)} "
            f"-o jsonpath='{{.data.{RAY_AUTH_KEY}}}' | base64 -d"
        )
    return KubectlCommands(
        dashboard_port_forward=(
            f"kubectl -n {namespace} port-forward svc/{head_service_name(ray.name)} "
            f"{DASHBOARD_PORT}:{DASHBOARD_PORT}"
        ),
        head_shell=f"kubectl -n {namespace} exec -it {head_pod} -c {HEAD_CONTAINER} -- bash",
        jupyter_port_forward=jupyter,
        auth_token=token,
    )


def shared_packages_dir(ray: RayClusterConfig, mount_path: str) -> str:
    """Content-addressed: a new package list, image or installer installs into a new directory."""
    key = "\n".join([ray.image, INSTALL_SCRIPT, *sorted(ray.shared_packages)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{mount_path}/{PACKAGES_SUBDIR}/{digest}"


def _resources(group: GroupResources) -> dict[str, Any]:
    # Memory request == limit: Ray sizes its object store from the limit and /dev/shm (kuberay#201).
    amounts: dict[str, Any] = {"cpu": group.cpu, "memory": group.memory}
    limits = dict(amounts)
    if group.gpu:
        limits["nvidia.com/gpu"] = str(group.gpu)
    return {"requests": amounts, "limits": limits}


def package_index_env(url: str) -> list[tuple[str, str]]:
    """The environment that points pip and uv at one package index instead of PyPI.

    In every Ray container: Ray's runtime_env `pip` and `uv` plugins run their installs with the
    runtime env agent's environment (`os.environ`, plus the job's `env_vars`), which the agent
    inherits from the raylet and so from the container. Also in the shared-packages installer
    and in Jupyter (`%pip install`). pip refuses a plain-http index unless its host is trusted;
    uv takes `UV_DEFAULT_INDEX` (`UV_INDEX_URL` for releases before 0.4.23) and is told the same
    host is known to be insecure."""
    env = [
        ("PIP_INDEX_URL", url),
        ("UV_DEFAULT_INDEX", url),
        ("UV_INDEX_URL", url),
    ]
    parts = urlsplit(url)
    if parts.scheme == "http":
        env += [("PIP_TRUSTED_HOST", parts.netloc), ("UV_INSECURE_HOST", parts.netloc)]
    return env


def _env(ray: RayClusterConfig, wiring: StorageWiring) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in wiring.env]
    if ray.package_index:
        env.extend(
            {"name": name, "value": value} for name, value in package_index_env(ray.package_index)
        )
    env.extend(
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for name, secret, key in wiring.secret_env
    )
    if wiring.bucket_uri is not None:
        env.append({"name": "RAY_PLATFORM_BUCKET_URI", "value": wiring.bucket_uri})
    if wiring.shared_mount_path:
        env.append({"name": "RAY_PLATFORM_SHARED_DIR", "value": wiring.shared_mount_path})
        if ray.mode == "dev" and ray.shared_packages:
            packages = shared_packages_dir(ray, wiring.shared_mount_path)
            env.append({"name": "PYTHONPATH", "value": f"{packages}/site-packages"})
    env.append({"name": "RAY_PLATFORM_MODE", "value": ray.mode})
    return env


def _mounts(wiring: StorageWiring) -> list[dict[str, Any]]:
    mounts = [{"name": RAY_LOGS_VOLUME, "mountPath": RAY_TMP_DIR}]
    if wiring.shared_mount_path:
        mounts.append({"name": SHARED_VOLUME, "mountPath": wiring.shared_mount_path})
    mounts.extend(dict(m) for m in wiring.volume_mounts)
    return mounts


def _volumes(wiring: StorageWiring) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": RAY_LOGS_VOLUME, "emptyDir": {}}]
    if wiring.shared_claim_name:
        volumes.append(
            {
                "name": SHARED_VOLUME,
                "persistentVolumeClaim": {"claimName": wiring.shared_claim_name},
            }
        )
    volumes.extend(dict(v) for v in wiring.volumes)
    return volumes


def container_security_context() -> dict[str, Any]:
    """Pod Security `restricted` for one container: no privilege escalation, no capabilities,
    the runtime's default seccomp profile, never root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_template(
    *,
    wiring: StorageWiring,
    service_account: str,
    container: dict[str, Any],
    extra_volumes: list[dict[str, Any]],
    extra_init: list[dict[str, Any]],
    node_selector: dict[str, str],
    sidecars: tuple[dict[str, Any], ...] = (),
    api_token: bool = True,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`sidecars` run as native sidecars (init containers with `restartPolicy: Always`, after
    every other init container): the kubelet restarts one that ends, whatever the pod's
    restartPolicy, and they are not the Ray container KubeRay watches."""
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": api_token,
        # Autoscaler v2 deletes and replaces failed Ray pods itself; KubeRay requires Never.
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RAY_UID,
            "runAsGroup": RAY_GID,
            "fsGroup": RAY_GID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # The Ray container first: KubeRay finds it by index (utils.RayContainerIndex).
        "containers": [{**container, "securityContext": container_security_context()}],
        "volumes": _volumes(wiring) + extra_volumes,
    }
    init = [
        {**c, "securityContext": container_security_context()}
        for c in [*wiring.init_containers, *extra_init]
    ]
    init += [
        {**c, "restartPolicy": "Always", "securityContext": container_security_context()}
        for c in sidecars
    ]
    if init:
        spec["initContainers"] = init
    selector = {**wiring.node_selector, **node_selector}
    if selector:
        spec["nodeSelector"] = selector
    template: dict[str, Any] = {"spec": spec}
    merged = {**wiring.pod_annotations, **(annotations or {})}
    if merged:
        template["metadata"] = {"annotations": merged}
    return template


def _install_packages_container(ray: RayClusterConfig, wiring: StorageWiring) -> dict[str, Any]:
    assert wiring.shared_mount_path is not None
    index = package_index_env(ray.package_index) if ray.package_index else []
    return {
        "name": "install-shared-packages",
        "image": ray.image,
        "command": ["/bin/sh", "-c", INSTALL_SCRIPT],
        "env": [
            {"name": "TARGET", "value": shared_packages_dir(ray, wiring.shared_mount_path)},
            {"name": "REQUIREMENTS", "value": "\n".join(ray.shared_packages)},
            {"name": "RETRY_DELAY", "value": str(INSTALL_RETRY_DELAY)},
            {"name": "RETRY_MAX_DELAY", "value": str(INSTALL_RETRY_MAX_DELAY)},
            {"name": "TERMINATION_LOG", "value": TERMINATION_LOG},
            *({"name": name, "value": value} for name, value in index),
        ],
        "volumeMounts": [{"name": SHARED_VOLUME, "mountPath": wiring.shared_mount_path}],
        "resources": _resources(ray.head),
        # The script writes why it retries there; should the container end in an error before
        # it wrote anything (killed), the status shows the tail of its log instead.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


RAY_AUTH_VOLUME = "ray-auth-token"
RAY_AUTH_DIR = "/etc/ray-auth"
RAY_AUTH_KEY = "auth_token"
"""KubeRay (token auth) keeps the cluster's token in a Secret named like the RayCluster, under
this key, and gives it only to the containers it manages."""


def _jupyter(
    ray: RayClusterConfig, jupyter: JupyterConfig, wiring: StorageWiring
) -> dict[str, Any]:
    """JupyterLab beside Ray: same image, environment (Ray address, PYTHONPATH with the shared
    packages and JupyterLab), mounts and identity; notebooks on the shared file system. With
    token auth, `ray.init()` in a notebook needs the cluster's token: KubeRay injects it only
    into its own containers, so it is mounted here as a read-only file."""
    assert wiring.shared_mount_path is not None
    # Every Ray container's environment, not the head container's: the runtime_env file is
    # mounted on the Ray container only.
    extra = _env(ray, wiring)
    extra.append({"name": "RAY_ADDRESS", "value": f"127.0.0.1:{GCS_PORT}"})
    mounts = _mounts(wiring)
    if ray.auth == "token":
        extra += [
            {"name": "RAY_AUTH_MODE", "value": "token"},
            {"name": "RAY_AUTH_TOKEN_PATH", "value": f"{RAY_AUTH_DIR}/{RAY_AUTH_KEY}"},
        ]
        mounts.append({"name": RAY_AUTH_VOLUME, "mountPath": RAY_AUTH_DIR, "readOnly": True})
    return jupyter_container(
        image=ray.image,
        port=jupyter.port,
        root_dir=wiring.shared_mount_path,
        token_secret_name=jupyter.token_secret_name,
        token_secret_key=JUPYTER_TOKEN_KEY,
        env=extra,
        volume_mounts=mounts,
        resources=_resources(jupyter.resources),
        security_context=container_security_context(),
        # The installer's virtualenv, by its real path (PYTHONPATH reaches its site-packages
        # through a symlink, which JupyterLab cannot find its assets from).
        prefix=f"{shared_packages_dir(ray, wiring.shared_mount_path)}/{PACKAGES_VENV}",
    )


def _jupyter_volumes(ray: RayClusterConfig) -> list[dict[str, Any]]:
    if ray.jupyter is None:
        return []
    volumes = [token_volume(ray.jupyter.token_secret_name)]
    if ray.auth == "token":
        volumes.append(
            {
                "name": RAY_AUTH_VOLUME,
                "secret": {
                    "secretName": auth_token_secret_name(ray.name),
                    "items": [{"key": RAY_AUTH_KEY, "path": RAY_AUTH_KEY}],
                    "defaultMode": 0o440,
                },
            }
        )
    return volumes


def head_group(
    ray: RayClusterConfig, wiring: StorageWiring, runtime_env_config_map: str
) -> dict[str, Any]:
    """The headGroupSpec: dashboard on a ClusterIP service only, runtime_env file mounted."""
    env = _env(ray, wiring)
    env.append(
        {"name": "RAY_PLATFORM_RUNTIME_ENV", "value": f"{RUNTIME_ENV_DIR}/{RUNTIME_ENV_FILE}"}
    )
    container = {
        "name": HEAD_CONTAINER,
        "image": ray.image,
        "resources": _resources(ray.head),
        "env": env,
        "ports": [
            {"name": "gcs", "containerPort": GCS_PORT},
            {"name": "dashboard", "containerPort": DASHBOARD_PORT},
            {"name": "client", "containerPort": CLIENT_PORT},
        ],
        "volumeMounts": [
            *_mounts(wiring),
            {"name": RUNTIME_ENV_VOLUME, "mountPath": RUNTIME_ENV_DIR, "readOnly": True},
        ],
    }
    install = []
    if ray.mode == "dev" and ray.shared_packages and wiring.shared_mount_path:
        install.append(_install_packages_container(ray, wiring))
    sidecars: tuple[dict[str, Any], ...] = ()
    if ray.jupyter is not None and ray.mode == "dev" and wiring.shared_mount_path:
        sidecars = (_jupyter(ray, ray.jupyter, wiring),)
    template = _pod_template(
        wiring=wiring,
        service_account=wiring.service_account_name,
        container=container,
        extra_volumes=[
            {"name": RUNTIME_ENV_VOLUME, "configMap": {"name": runtime_env_config_map}},
            *(_jupyter_volumes(ray) if sidecars else []),
        ],
        extra_init=install,
        node_selector={},
        sidecars=sidecars,
        # Jupyter reads its token once: a rotated token must make a new pod.
        annotations=(
            {TOKEN_DIGEST_ANNOTATION: ray.jupyter.token_digest}
            if sidecars and ray.jupyter is not None and ray.jupyter.token_digest
            else None
        ),
    )
    if sidecars:
        # `ray.init()` in a notebook finds the head's raylet by scanning the processes it can
        # see (Ray's services.find_node_ids reads each raylet's --node_id from its command
        # line): from Jupyter's own PID namespace there is none, and the driver gives up after
        # 60 s ("No node info found"). A shared PID namespace (Pod Security `restricted`
        # allows it; only host namespaces are refused) lets it see the Ray container's. Only
        # with Jupyter: no other container of the pod needs another's processes. With it the
        # pod's containers, all uid 1000, can read each other's /proc/<pid>/environ and files
        # (/proc/<pid>/root): nothing that code in the head pod does not hold already — the Ray
        # token is mounted into Jupyter, the head's ServiceAccount token is in every head
        # container, and a job on the head, reading Jupyter's token, shares its loopback anyway.
        template["spec"]["shareProcessNamespace"] = True
    return {
        "serviceType": "ClusterIP",
        "rayStartParams": dict(ray.head.ray_start_params),
        "template": template,
    }


def worker_group(
    ray: RayClusterConfig, group: WorkerGroup, wiring: StorageWiring
) -> dict[str, Any]:
    """One workerGroupSpec; replicas are left to the autoscaler between min and max."""
    container = {
        "name": "ray-worker",
        "image": ray.image,
        "resources": _resources(group.resources),
        "env": _env(ray, wiring),
        "volumeMounts": _mounts(wiring),
    }
    return {
        "groupName": group.name,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": dict(group.resources.ray_start_params),
        "template": _pod_template(
            wiring=wiring,
            # Never the head's: KubeRay binds the autoscaler's Role (patch pods, patch the
            # RayCluster) to the head's ServiceAccount, and workers run user code.
            service_account=wiring.worker_service_account_name or wiring.service_account_name,
            # Only the head's autoscaler calls the Kubernetes API (cloud identities project
            # their own tokens).
            api_token=False,
            container=container,
            extra_volumes=[],
            extra_init=[],
            node_selector=dict(group.node_selector),
        ),
    }


def raycluster_spec(
    ray: RayClusterConfig, wiring: StorageWiring, runtime_env_config_map: str
) -> dict[str, Any]:
    """The RayCluster `spec`."""
    spec: dict[str, Any] = {
        "rayVersion": ray.ray_version,
        # KubeRay >= 1.6 recreates every pod when the spec (but for replicas) changes: a new
        # image, Ray version or package set reaches all pods, without replacing the RayCluster
        # (which would also mint a new auth token).
        "upgradeStrategy": {"type": "Recreate"},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            # The default autoscaler from Ray 2.47 on; set explicitly so KubeRay configures it.
            "version": "v2",
            "idleTimeoutSeconds": ray.idle_timeout_seconds,
            "upscalingMode": "Default",
            # Set, not left to KubeRay's default (the same 500m/512Mi): it counts against the
            # head pod's requests, which a small node must fit (components/kuberay/sizing.py).
            "resources": _resources(ray.autoscaler),
            "securityContext": container_security_context(),
        },
        "headGroupSpec": head_group(ray, wiring, runtime_env_config_map),
        "workerGroupSpecs": [worker_group(ray, g, wiring) for g in ray.worker_groups],
    }
    if ray.auth == "token":
        spec["authOptions"] = {"mode": "token"}
    return spec


def raycluster_manifest(
    *,
    namespace: str,
    ray: RayClusterConfig,
    wiring: StorageWiring,
    runtime_env_config_map: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The whole RayCluster, with an explicit namespace (no namespacing lookup at preview)."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": ray.name, "namespace": namespace, "labels": dict(labels)},
        "spec": raycluster_spec(ray, wiring, runtime_env_config_map),
    }
