"""Kubernetes around Ray: restricted Pod Security on the namespace, a NetworkPolicy for the pods."""

from __future__ import annotations

from pulumi_policy import Policy, ReportViolation, StackValidationArgs

from policy.common import CannotCheck, of_type, path, stack_rule
from policy.raycluster import RAYCLUSTER

NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ENFORCE = "pod-security.kubernetes.io/enforce"


def _namespace(args: StackValidationArgs, report: ReportViolation) -> None:
    namespaces = {path(n.props, "metadata", "name"): n for n in of_type(args.resources, NAMESPACE)}
    for rc in of_type(args.resources, RAYCLUSTER):
        ns_name = path(rc.props, "metadata", "namespace")
        ns = namespaces.get(ns_name)
        if ns is None:
            # The namespace exists outside this stack (createNamespace: false): its labels are
            # not in the preview, so say so rather than pass.
            raise CannotCheck(f"namespace {ns_name} of {rc.name} is not managed by this stack")
        level = (path(ns.props, "metadata", "labels") or {}).get(ENFORCE)
        if level != "restricted":
            report(f"namespace {ns_name} enforces Pod Security {level!r}, not 'restricted'", ns.urn)


def _network_policy(args: StackValidationArgs, report: ReportViolation) -> None:
    policies = of_type(args.resources, NETWORK_POLICY)
    for rc in of_type(args.resources, RAYCLUSTER):
        name = path(rc.props, "metadata", "name")
        ns = path(rc.props, "metadata", "namespace")
        selecting = [
            p
            for p in policies
            if path(p.props, "metadata", "namespace") == ns
            and (path(p.props, "spec", "podSelector", "matchLabels") or {}).get("ray.io/cluster")
            == name
        ]
        if not selecting:
            report(f"no NetworkPolicy in {ns} selects ray.io/cluster={name}", rc.urn)


POLICIES: list[Policy] = [
    stack_rule(
        "k8s-ray-namespace-restricted",
        "The Ray namespace enforces the restricted Pod Security Standard.",
        "Label the namespace pod-security.kubernetes.io/enforce: restricted.",
        _namespace,
    ),
    stack_rule(
        "k8s-ray-network-policy",
        "A NetworkPolicy selects the Ray pods (label ray.io/cluster).",
        "Add a networking.k8s.io/v1 NetworkPolicy with podSelector ray.io/cluster: <name>.",
        _network_policy,
    ),
]
