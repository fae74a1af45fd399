"""The NetworkPolicy that guards a RayCluster's pods. Plain data, no Pulumi.

Ray's dashboard (8265), Jobs API (same port), client (10001) and GCS (6379) ports carry no
network protection of their own, and token auth covers only the dashboard and Jobs API. Plain
`networking.k8s.io/v1` works with every KubeRay version (KubeRay 1.7's own `networkPolicy` field
sits behind an alpha feature gate that is off by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.raycluster_inputs import NetworkAccess
from components.raycluster_spec import DASHBOARD_PORT

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
    """Ingress only from the same RayCluster, the operator (dashboard port) and named
    namespaces; egress open unless `access.restrict_egress`."""
    own_pods = {"podSelector": {"matchLabels": {CLUSTER_LABEL: cluster_name}}}
    ingress: list[dict[str, Any]] = [
        {"from": [own_pods]},
        {
            "from": [_namespace(access.operator_namespace)],
            "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}],
        },
    ]
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
