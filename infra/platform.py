"""Composition: settings → cloud adapter → wiring → KubeRay operator → RayCluster → outputs.

Nothing here knows a cloud: the adapter table (`infra/clouds/__init__.py`) picks the adapter, and
the adapter brings the provider, storage, identity and its own outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

import contract.outputs as out
from components.kuberay.jupyter import token_digest
from components.kuberay.operator import CrdChart, KubeRayOperator, KubeRayOperatorArgs
from components.kuberay.ray_cluster import RayCluster, RayClusterArgs
from components.kuberay.raycluster_inputs import (
    GroupResources,
    JupyterConfig,
    NetworkAccess,
    RayClusterConfig,
    WorkerGroup,
)
from components.kuberay.raycluster_spec import DASHBOARD_PORT, runtime_env_json
from components.kubernetes.labels import MANAGED_LABELS, pod_security_labels, stack_labels
from infra import clouds, kuberay_release
from infra.clouds.adapter import KubernetesTarget
from infra.settings import GroupSettings, Mode, RaySettings, Settings, setting_error
from infra.settings.errors import SettingsError
from infra.settings.secrets import secret_setting
from infra.settings.values import index_host

# Ray pods need nothing beyond Pod Security `restricted`; the API server enforces it when the
# operator creates them, so a pod that asks for more is refused, not started.
RESTRICTED = pod_security_labels("restricted")


def _resources(group: GroupSettings) -> GroupResources:
    return GroupResources(
        cpu=group.cpu,
        memory=group.memory,
        gpu=group.gpu,
        ray_start_params=dict(group.ray_start_params),
    )


def package_index_egress(url: str | None) -> tuple[Mapping[str, object], ...]:
    """With egress closed, Ray pods still reach the package index: its address alone when the
    URL names one, else its port (HTTPS on 443 is open anyway)."""
    if url is None:
        return ()
    host, port, is_ip = index_host(url)
    if port == 443:
        return ()
    rule: dict[str, object] = {"ports": [{"protocol": "TCP", "port": port}]}
    if is_ip:
        cidr = f"{host}/{128 if ':' in host else 32}"
        rule = {"to": [{"ipBlock": {"cidr": cidr}}], **rule}
    return (rule,)


def jupyter_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-jupyter"


def ray_cluster_config(
    ray: RaySettings, mode: Mode, *, jupyter_token: str | None = None
) -> RayClusterConfig:
    """The settings, mapped onto the RayCluster builder's own input types."""
    jupyter: JupyterConfig | None = None
    packages = ray.shared_packages
    if ray.jupyter.enabled and mode == "dev":
        jupyter = JupyterConfig(
            port=ray.jupyter.port,
            token_secret_name=jupyter_secret_name(ray.cluster_name),
            resources=GroupResources(cpu=ray.jupyter.cpu, memory=ray.jupyter.memory),
            requirement=f"jupyterlab=={ray.jupyter.version}",
            token_digest=(
                token_digest(jupyter_token, f"ray-platform/jupyter/{ray.cluster_name}")
                if jupyter_token
                else None
            ),
        )
        # The rayproject/ray images lack JupyterLab: it is installed like the shared packages
        # (content-addressed on the shared file system), once, not at every start.
        packages = (*packages, jupyter.requirement)
    return RayClusterConfig(
        name=ray.cluster_name,
        ray_version=ray.version,
        image=ray.image,
        mode=mode,
        head=_resources(ray.head),
        worker_groups=tuple(
            WorkerGroup(
                name=g.name,
                resources=_resources(g),
                min_replicas=g.min_replicas,
                max_replicas=g.max_replicas,
                node_selector=dict(g.node_selector),
            )
            for g in ray.worker_groups
        ),
        runtime_env=dict(ray.runtime_env),
        shared_packages=packages,
        package_index=ray.package_index,
        idle_timeout_seconds=ray.idle_timeout_seconds,
        auth=ray.auth,
        jupyter=jupyter,
        autoscaler=GroupResources(cpu=ray.autoscaler.cpu, memory=ray.autoscaler.memory),
    )


def build(settings: Settings) -> dict[str, pulumi.Input[str]]:
    """Register every resource for these settings; return the stack outputs."""
    # Everything that can fail on a bad setting happens before the first resource is registered.
    try:
        # A provider-managed KubeRay (install: managed) brings its own CRDs.
        crd_chart = (
            None
            if settings.operator.install == "managed"
            # Helm's keep policy where the stack retains its CRDs (prod: `stateful.protect`).
            else CrdChart(
                *kuberay_release.crd_chart(settings.operator.version, settings.stateful.protect)
            )
        )
    except kuberay_release.ReleaseError as err:
        raise setting_error(
            "operator.version",
            settings.operator.version,
            f"is not a KubeRay release this program can fetch: {err}",
        ) from None
    except OSError as err:  # not a setting: the checkout the program runs in
        where = Path(err.filename) if err.filename else Path.cwd() / kuberay_release.CHART_DIR
        raise SettingsError(
            f"cannot write the KubeRay CRDs' chart at {where}: {err.strerror or err}; the "
            "program writes it into the project directory, which must be writable"
        ) from None
    adapter = clouds.adapter_for(settings)
    token = settings.jupyter_token
    config = ray_cluster_config(
        settings.ray, settings.mode, jupyter_token=token.get_secret_value() if token else None
    )

    provider = adapter.kubernetes_provider()
    namespace_name = settings.kubernetes.namespace
    wait_for: tuple[pulumi.Resource, ...] = ()
    if settings.kubernetes.create_namespace:
        namespace = k8s.core.v1.Namespace(
            "ray-namespace",
            metadata={"name": namespace_name, "labels": {**MANAGED_LABELS, **RESTRICTED}},
            opts=pulumi.ResourceOptions(provider=provider),
        )
        wait_for = (namespace,)
    target = KubernetesTarget(provider=provider, namespace=namespace_name, wait_for=wait_for)

    op = settings.operator
    operator = KubeRayOperator(
        "kuberay",
        KubeRayOperatorArgs(
            version=op.version,
            crd_chart=crd_chart,
            crd_release_namespace=namespace_name,
            namespace=op.namespace,
            install=op.install,
            chart_repo=op.chart_repo,
            watch_namespaces=(namespace_name,),
            cpu=op.cpu,
            memory=op.memory,
            retain_crds=settings.stateful.protect,
        ),
        # The chart's namespaced Roles go into the Ray namespace: it must exist first.
        opts=pulumi.ResourceOptions(providers=[provider], depends_on=list(wait_for) or None),
    )

    storage = adapter.storage_and_identity(target)
    cluster = RayCluster(
        "ray",
        RayClusterArgs(
            namespace=namespace_name,
            config=config,
            wiring=storage.wiring,
            access=NetworkAccess(
                allow_from_namespaces=settings.kubernetes.network_policy.allow_from_namespaces,
                restrict_egress=settings.kubernetes.network_policy.restrict_egress,
                extra_egress=(
                    *adapter.egress_allowances(),
                    *package_index_egress(settings.ray.package_index),
                ),
            ),
            labels={**stack_labels(settings.stack), "ray-platform/mode": settings.mode},
            # Read as Pulumi's config API marks it: a secret, encrypted in state, masked in output.
            jupyter_token=(
                secret_setting("jupyterToken")
                if config.jupyter and settings.jupyter_token
                else None
            ),
        ),
        opts=target.component_opts(operator, *storage.dependencies),
    )

    # The names are the output contract's (contract/outputs.py): cli/outputs.py reads them.
    outputs: dict[str, pulumi.Input[str]] = {
        out.MODE: settings.mode,
        out.CLOUD: settings.cloud,
        out.NAMESPACE: namespace_name,
        out.RAY_CLUSTER_NAME: cluster.cluster_name,
        out.IMAGE: settings.ray.image,
        out.DASHBOARD_PORT_FORWARD: cluster.dashboard_port_forward,
        out.RAY_ADDRESS: f"http://127.0.0.1:{DASHBOARD_PORT}",
        out.RUNTIME_ENV: runtime_env_json(config.runtime_env),
        # `ray-platform submit` refuses --pip/--uv for these (they would never load).
        out.SHARED_PACKAGES: json.dumps(list(config.shared_packages)),
        # Said outright, so the command need not infer it from the human-readable command below.
        out.RAY_AUTH_MODE: settings.ray.auth,
        **storage.outputs,
        out.HEAD_SHELL_COMMAND: cluster.head_shell_command,
    }
    if cluster.jupyter_port_forward is not None:
        outputs[out.JUPYTER_PORT_FORWARD] = cluster.jupyter_port_forward
    if config.jupyter is not None:
        outputs[out.JUPYTER_URL] = f"http://127.0.0.1:{config.jupyter.port}/lab"
    if cluster.auth_token_command is not None:
        outputs[out.AUTH_TOKEN_COMMAND] = cluster.auth_token_command
    if settings.ray.base_image is not None:
        # What `ray-platform image build` builds on (imageRepository, where it pushes, comes
        # from the adapter that has the registry).
        outputs[out.BASE_IMAGE] = settings.ray.base_image
    return outputs
