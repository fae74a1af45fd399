"""RayCluster: the KubeRay RayCluster custom resource plus the stack's default runtime_env."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.kuberay.network_policy import network_policy_manifest
from components.kuberay.raycluster_inputs import NetworkAccess, RayClusterConfig
from components.kuberay.raycluster_spec import (
    JUPYTER_TOKEN_KEY,
    RUNTIME_ENV_FILE,
    head_service_name,
    kubectl_commands,
    raycluster_manifest,
    runtime_env_json,
)
from components.kubernetes.labels import MANAGED_LABELS
from components.options import waiting_child
from components.wiring import StorageWiring

FORCE_APPLY = {"pulumi.com/patchForce": "true"}
"""The provider's server-side apply forces its field ownership on this object (on create, update
and their preview dry-runs: pulumi-kubernetes `await.patchForce` reads it from the inputs).

Needed because `workerGroupSpecs` is an atomic list in the KubeRay CRD: once the autoscaler has
patched a group's `replicas`, it owns the whole list, and an unforced apply of any RayCluster
change fails with a conflict on `.spec.workerGroupSpecs`. Forcing hands the list back to this
program without `replicas` (it never sets them): with in-tree autoscaling KubeRay deletes no pod
to match (random deletion is off), and the autoscaler patches the group to its demand again.
Every other field of the RayCluster is this program's alone."""


@dataclass(frozen=True)
class RayClusterArgs:
    """Inputs of a RayCluster. The Kubernetes provider comes through `opts.providers`, and
    what the cluster waits for (CRDs, operator, claim, ServiceAccount) through
    `opts.depends_on`."""

    namespace: str
    config: RayClusterConfig
    wiring: StorageWiring
    access: NetworkAccess
    """Who may reach the pods (a NetworkPolicy is always created)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    jupyter_token: pulumi.Input[str] | None = None
    """With `config.jupyter`: the token (a Pulumi secret) for the Secret Jupyter reads."""


class RayCluster(pulumi.ComponentResource):
    """A RayCluster whose dashboard is reachable only inside the cluster (ClusterIP)."""

    cluster_name: str
    """The RayCluster's name."""
    head_service: str
    """The head's ClusterIP Service (dashboard 8265, client 10001, GCS 6379)."""
    runtime_env_config_map: str
    """ConfigMap holding the stack's default runtime_env, mounted on the head."""
    dashboard_port_forward: pulumi.Output[str]
    """`kubectl port-forward` command that makes the dashboard / Jobs API local."""
    head_shell_command: pulumi.Output[str]
    """`kubectl exec` into the head's Ray container."""
    jupyter_port_forward: pulumi.Output[str] | None
    """With Jupyter: `kubectl port-forward` to JupyterLab on the head pod."""
    auth_token_command: pulumi.Output[str] | None
    """With token auth: the kubectl command that prints the Ray auth token."""

    def __init__(
        self, name: str, args: RayClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:kuberay:RayCluster", name, None, opts)
        ray = args.config
        labels = {**MANAGED_LABELS, **args.labels}
        self.cluster_name = ray.name
        self.runtime_env_config_map = f"{ray.name}-runtime-env"
        self.head_service = head_service_name(ray.name)

        config_map = k8s.core.v1.ConfigMap(
            f"{name}-runtime-env",
            metadata={
                "name": self.runtime_env_config_map,
                "namespace": args.namespace,
                "labels": labels,
            },
            data={RUNTIME_ENV_FILE: runtime_env_json(ray.runtime_env)},
            opts=waiting_child(self, opts),
        )
        waits: list[pulumi.Resource] = [config_map]
        if ray.jupyter is not None:
            if args.jupyter_token is None:
                raise ValueError(f"{name}: Jupyter needs a token")
            waits.append(
                k8s.core.v1.Secret(
                    f"{name}-jupyter-token",
                    metadata={
                        "name": ray.jupyter.token_secret_name,
                        "namespace": args.namespace,
                        "labels": labels,
                    },
                    string_data={JUPYTER_TOKEN_KEY: args.jupyter_token},
                    opts=waiting_child(self, opts),
                )
            )
        # Plain data but for the few Output leaves the wiring may carry (the bucket URI): the
        # rest of the spec is known, and checked, at the first preview.
        manifest = raycluster_manifest(
            namespace=args.namespace,
            ray=ray,
            wiring=args.wiring,
            runtime_env_config_map=self.runtime_env_config_map,
            labels=labels,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-raycluster",
            api_version="ray.io/v1",
            kind="RayCluster",
            # Plain metadata with an explicit namespace: the provider needs no lookup at preview.
            # A changed spec is updated in place; its upgradeStrategy (Recreate) has KubeRay
            # recreate the pods, so the auth token Secret survives.
            metadata={
                **manifest["metadata"],
                "annotations": {**manifest["metadata"].get("annotations", {}), **FORCE_APPLY},
            },
            spec=manifest["spec"],
            opts=waiting_child(self, opts, depends_on=waits),
        )
        policy = network_policy_manifest(
            name=f"{ray.name}-ingress",
            namespace=args.namespace,
            cluster_name=ray.name,
            access=args.access,
            labels=labels,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=policy["metadata"],
            spec=policy["spec"],
            opts=waiting_child(self, opts),
        )
        # The commands people run against this cluster, from the names given above.
        commands = kubectl_commands(args.namespace, ray)
        self.dashboard_port_forward = pulumi.Output.from_input(commands.dashboard_port_forward)
        self.head_shell_command = pulumi.Output.from_input(commands.head_shell)
        self.jupyter_port_forward = _optional(commands.jupyter_port_forward)
        self.auth_token_command = _optional(commands.auth_token)
        outputs: dict[str, pulumi.Output[str] | str] = {
            "cluster_name": self.cluster_name,
            "head_service": self.head_service,
            "runtime_env_config_map": self.runtime_env_config_map,
            "dashboard_port_forward": self.dashboard_port_forward,
            "head_shell_command": self.head_shell_command,
        }
        if self.jupyter_port_forward is not None:
            outputs["jupyter_port_forward"] = self.jupyter_port_forward
        if self.auth_token_command is not None:
            outputs["auth_token_command"] = self.auth_token_command
        self.register_outputs(outputs)


def _optional(command: str | None) -> pulumi.Output[str] | None:
    return None if command is None else pulumi.Output.from_input(command)
