"""Composition: settings → cloud adapter → wiring → KubeRay operator → RayCluster → outputs."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.kuberay_operator import KubeRayOperator, KubeRayOperatorArgs
from components.ray_cluster import RayCluster, RayClusterArgs
from components.raycluster_spec import DASHBOARD_PORT, runtime_env_json
from components.wiring import MANAGED_LABELS
from infra import kuberay_release
from infra import local as local_adapter
from infra.adapters import CloudStorage
from infra.settings import Settings, setting_error


def build(settings: Settings) -> dict[str, pulumi.Input[str]]:
    """Register every resource for these settings; return the stack outputs."""
    tags = {
        "ray-platform/project": settings.project,
        "ray-platform/stack": settings.stack,
        "ray-platform/mode": settings.mode,
        "managed-by": "pulumi",
    }
    # Everything that can fail on a bad setting happens before the first resource is registered.
    try:
        crd_yaml = kuberay_release.crd_yaml(settings.operator.version)
    except kuberay_release.ReleaseError as err:
        raise setting_error(
            "operator.version",
            settings.operator.version,
            f"is not a KubeRay release this program can fetch: {err}",
        ) from None

    if settings.cloud == "aws":
        # Imported only for AWS stacks: pulumi_aws is a second of start-up the local stack skips.
        from infra import aws as aws_adapter

        assert settings.kubernetes.cluster_name is not None
        eks = aws_adapter.lookup_cluster(settings.kubernetes.cluster_name)
        mount_subnets = aws_adapter.mount_subnets(settings, eks)
        provider = aws_adapter.kubernetes_provider(settings, eks)
    else:
        provider = local_adapter.kubernetes_provider(settings)
    k8s_opts = pulumi.ResourceOptions(provider=provider)

    in_namespace = k8s_opts
    if settings.kubernetes.create_namespace:
        namespace = k8s.core.v1.Namespace(
            "ray-namespace",
            metadata={
                "name": settings.kubernetes.namespace,
                "labels": dict(MANAGED_LABELS),
            },
            opts=k8s_opts,
        )
        in_namespace = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[namespace])
        )

    op = settings.operator
    operator = KubeRayOperator(
        "kuberay",
        KubeRayOperatorArgs(
            version=op.version,
            crd_yaml=crd_yaml,
            namespace=op.namespace,
            install=op.install,
            chart_repo=op.chart_repo,
            watch_namespaces=(settings.kubernetes.namespace,),
            cpu=op.cpu,
            memory=op.memory,
            kubernetes_opts=k8s_opts,
            retain_crds=settings.protect,
        ),
    )

    storage: CloudStorage
    if settings.cloud == "aws":
        storage = aws_adapter.build_storage(settings, eks, mount_subnets, in_namespace, tags)
    else:
        storage = local_adapter.build_storage(settings, in_namespace)

    cluster = RayCluster(
        "ray",
        RayClusterArgs(
            namespace=settings.kubernetes.namespace,
            ray=settings.ray,
            mode=settings.mode,
            wiring=storage.wiring,
            labels={"ray-platform/stack": settings.stack, "ray-platform/mode": settings.mode},
            depends_on=[*operator.ready, *storage.dependencies],
            kubernetes_opts=in_namespace,
        ),
    )

    outputs: dict[str, pulumi.Input[str]] = {
        "mode": settings.mode,
        "cloud": settings.cloud,
        "namespace": settings.kubernetes.namespace,
        "rayClusterName": cluster.cluster_name,
        "image": settings.ray.image,
        "dashboardPortForward": cluster.dashboard_port_forward,
        "rayAddress": f"http://127.0.0.1:{DASHBOARD_PORT}",
        "runtimeEnv": runtime_env_json(settings.ray),
        **storage.outputs,
    }
    if settings.ray.auth == "token":
        outputs["authTokenCommand"] = (
            f"kubectl -n {settings.kubernetes.namespace} get secret {cluster.cluster_name} "
            "-o jsonpath='{.data.auth_token}' | base64 -d"
        )
    return outputs
