"""Labels this program puts on Kubernetes objects."""

MANAGED_LABELS = {"app.kubernetes.io/managed-by": "pulumi"}
"""Labels on every Kubernetes object this program creates."""

STACK_LABEL = "ray-platform/stack"
"""The stack an object belongs to: stacks of this program share namespaces and names on one
cluster (`local` and `local-prod`), and tools tell their objects apart by it."""


def stack_labels(stack: str) -> dict[str, str]:
    """The labels naming the stack an object belongs to."""
    return {STACK_LABEL: stack}


def pod_security_labels(level: str) -> dict[str, str]:
    """A namespace's Pod Security labels: enforced, and warned and audited at the same level."""
    return {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn", "audit")}
