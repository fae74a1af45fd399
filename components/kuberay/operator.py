"""KubeRayOperator: the KubeRay CRDs (applied by the program) and, optionally, its chart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.kubernetes.labels import MANAGED_LABELS
from components.options import waiting_child

# The token before it matched the class name; the alias keeps deployed stacks' resources.
_OLD_TYPE = "ray-platform:kuberay:Operator"


@dataclass(frozen=True)
class KubeRayOperatorArgs:
    """Inputs of a KubeRayOperator."""

    version: str
    """KubeRay release, e.g. 1.5.1: chart version and CRD version."""
    crd_yaml: str
    """That release's CRDs (RayCluster, RayJob, RayService) as multi-document YAML."""
    namespace: str = "kuberay-system"
    install: Literal["helm", "external", "managed"] = "helm"
    """helm: install the kuberay-operator chart here. external: an operator already runs."""
    chart_repo: str = "https://ray-project.github.io/kuberay-helm/"
    watch_namespaces: Sequence[str] = ()
    """Namespaces the operator reconciles; empty means all."""
    cpu: str = "100m"
    memory: str = "512Mi"
    retain_crds: bool = False
    """Keep the CRDs on destroy: deleting a CRD deletes every RayCluster/RayJob/RayService of
    that kind in the whole cluster, not only this stack's (on in prod)."""


def chart_values(args: KubeRayOperatorArgs) -> dict[str, object]:
    """Helm values for the kuberay-operator chart; CRDs are not the chart's business here."""
    values: dict[str, object] = {
        "resources": {
            "requests": {"cpu": args.cpu, "memory": args.memory},
            "limits": {"cpu": args.cpu, "memory": args.memory},
        },
    }
    if args.watch_namespaces:
        values["watchNamespace"] = list(args.watch_namespaces)
        # watchNamespace narrows what the operator watches, not what it may do: without this the
        # chart still grants a ClusterRole (secrets get/list/watch in every namespace). With it,
        # the chart creates Roles in the watched namespaces only.
        values["singleNamespaceInstall"] = True
    return values


class KubeRayOperator(pulumi.ComponentResource):
    """CRDs first (server-side applied, upgraded with the version), then the operator.

    The Kubernetes provider comes through `opts.providers`; `opts.depends_on` reaches every
    Kubernetes object.

    The CRDs are registered by this program rather than hidden in the chart, so that the
    Kubernetes provider knows RayCluster before any RayCluster is previewed on a fresh cluster,
    and so that a version bump upgrades them (`helm upgrade` never does: kuberay#3133).
    """

    crds: k8s.yaml.v2.ConfigGroup | None
    """The CRDs (none when the cluster's provider manages KubeRay). A RayCluster depends on the
    component itself: Pulumi expands a dependency on a component to all its children (the CRDs
    and, when installed, the operator's namespace and release)."""

    def __init__(
        self, name: str, args: KubeRayOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=_OLD_TYPE)])
        )
        super().__init__("ray-platform:kuberay:KubeRayOperator", name, None, opts)
        self.crds = None
        if args.install == "managed":
            # The provider's add-on owns the operator and the CRDs: applying ours would fight
            # its field manager, and deleting them would delete every RayCluster in the cluster.
            self.register_outputs({})
            return
        # CRDs are ~1 MB each: too big for client-side apply's last-applied annotation
        # (kuberay#410); the provider applies them server-side.
        self.crds = k8s.yaml.v2.ConfigGroup(
            f"{name}-crds",
            yaml=args.crd_yaml,
            opts=waiting_child(self, opts, retain_on_delete=args.retain_crds),
        )
        if args.install == "helm":
            ns = k8s.core.v1.Namespace(
                f"{name}-ns",
                metadata={
                    "name": args.namespace,
                    "labels": dict(MANAGED_LABELS),
                },
                opts=waiting_child(self, opts),
            )
            k8s.helm.v3.Release(
                f"{name}-release",
                name="kuberay-operator",
                chart="kuberay-operator",
                version=args.version,
                repository_opts={"repo": args.chart_repo},
                namespace=ns.metadata.name,
                skip_crds=True,
                values=chart_values(args),
                opts=waiting_child(self, opts, depends_on=[self.crds]),
            )
        self.register_outputs({})
