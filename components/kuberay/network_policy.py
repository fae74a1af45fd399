"""The NetworkPolicy that guards a RayCluster's pods. Plain data, no Pulumi.

Ray's token auth (`authOptions.mode: token`) covers the dashboard and Jobs API (8265) and Ray's
gRPC services, the GCS (6379) included: KubeRay gives the token to every container it runs Ray in
and to the workers' `wait-gcs-ready` init container, whose `ray health-check` calls the GCS. The
policy is the second layer: it also covers what the token does not (the metrics port 8080, the
client server's port 10001, the object manager and worker ports) and every port when auth is
disabled.

Nothing outside the RayCluster needs to reach its pods by default: the operator makes no calls
into the pods of a plain RayCluster (KubeRay 1.6.1 builds dashboard and Serve clients only in its
RayJob and RayService controllers), so no rule admits its namespace. Plain `networking.k8s.io/v1`
works with every KubeRay version (KubeRay 1.7's own `networkPolicy` field sits behind an alpha
feature gate that is off by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.kuberay.raycluster_inputs import NetworkAccess

CLUSTER_LABEL = "ray.io/cluster"
"""The label KubeRay puts on every pod of a RayCluster."""
_NAMESPACE_NAME = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace: a selector no one can forge with their own labels."""


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {_NAMESPACE_NAME: name}}}


def egress_to(cidr: str, port: int, protocol: str = "TCP") -> dict[str, Any]:
    """A NetworkPolicy egress rule to one address block and port (e.g. a metadata server)."""
    return {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": protocol, "port": port}]}


def network_policy_manifest(
    *,
    name: str,
    namespace: str,
    cluster_name: str,
    access: NetworkAccess,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """Ingress only from the same RayCluster and named namespaces; egress open unless
    `access.restrict_egress`."""
    own_pods = {"podSelector": {"matchLabels": {CLUSTER_LABEL: cluster_name}}}
    ingress: list[dict[str, Any]] = [{"from": [own_pods]}]
    if access.allow_from_namespaces:
        ingress.append({"from": [_namespace(ns) for ns in access.allow_from_namespaces]})
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {CLUSTER_LABEL: cluster_name}},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }
    if access.restrict_egress:
        spec["policyTypes"] = ["Ingress", "Egress"]
        spec["egress"] = [
            {"to": [own_pods]},
            # Cluster DNS, wherever it runs.
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            # HTTPS: the Kubernetes API (the autoscaler), the bucket, package indexes.
            {"ports": [{"protocol": "TCP", "port": 443}]},
            *(dict(rule) for rule in access.extra_egress),
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }
