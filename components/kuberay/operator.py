"""KubeRayOperator: the KubeRay CRDs (a Helm release of a local chart), optionally its chart."""

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
CRD_RELEASE = "kuberay-crds"
"""The Helm release name of the CRDs (the operator's chart is `kuberay-operator`)."""


@dataclass(frozen=True)
class CrdChart:
    """A local Helm chart holding a KubeRay release's CRDs as templates."""

    path: str
    """Relative to the program's directory (the Kubernetes provider's working directory too), so
    the same chart is the same input on every machine."""
    version: str
    """The chart's SemVer: the KubeRay release, with the CRDs' digest as build metadata."""


@dataclass(frozen=True)
class KubeRayOperatorArgs:
    """Inputs of a KubeRayOperator."""

    version: str
    """KubeRay release, e.g. 1.5.1: chart version and CRD version."""
    crd_chart: CrdChart | None
    """That release's CRDs (RayCluster, RayJob, RayService, RayCronJob) as a local chart
    (`infra/kuberay_release.py` writes it); None with `install: managed`."""
    crd_release_namespace: str
    """Where Helm keeps the CRD release's record (a Secret): a namespace that exists before the
    component's children and outlives them (the Ray namespace)."""
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
    """CRDs first (installed and upgraded with the version), then the operator.

    The Kubernetes provider comes through `opts.providers`; `opts.depends_on` reaches every
    Kubernetes object.

    The CRDs are this program's own Helm release of a local chart that holds them as templates,
    not the operator chart's `crds/` (which `helm upgrade` never upgrades: kuberay#3133): a
    version bump is a new chart version, so an upgrade. One release rather than a Pulumi resource
    per CRD because the four CRDs are ~1.2 MB: as resources they were checked, diffed and stored
    in full on every run (~14 s of a 17 s no-op `up`, bench/README.md); the release's inputs are
    a chart path and a version that carries the CRDs' digest. Every custom resource has an
    explicit namespace, so a preview on a cluster without the CRDs needs no CRD knowledge.
    """

    crds: k8s.helm.v3.Release | None
    """The CRDs' release (none when the cluster's provider manages KubeRay). A RayCluster
    depends on the component itself: Pulumi expands a dependency on a component to all its
    children (the CRDs and, when installed, the operator's namespace and release)."""

    def __init__(
        self, name: str, args: KubeRayOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=_OLD_TYPE)])
        )
        super().__init__("ray-platform:kuberay:KubeRayOperator", name, None, opts)
        self.crds = None
        if args.install == "managed" or args.crd_chart is None:
            # The provider's add-on owns the operator and the CRDs: applying ours would fight
            # its field manager, and deleting them would delete every RayCluster in the cluster.
            self.register_outputs({})
            return
        # CRDs are 200-400 KB each (as JSON): too big for client-side apply's last-applied
        # annotation (kuberay#410). Helm keeps each revision of the release in a Secret instead
        # (~270 KB, gzipped), and waits for each CRD to be Established.
        self.crds = k8s.helm.v3.Release(
            f"{name}-crds",
            name=CRD_RELEASE,
            chart=args.crd_chart.path,
            # What the release diffs: a new digest is a new version, so `helm upgrade`.
            version=args.crd_chart.version,
            namespace=args.crd_release_namespace,
            # Each revision's record holds the whole manifest: keep a few.
            max_history=3,
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
