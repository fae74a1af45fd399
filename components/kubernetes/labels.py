"""Labels this program puts on Kubernetes objects."""

MANAGED_LABELS = {"app.kubernetes.io/managed-by": "pulumi"}
"""Labels on every Kubernetes object this program creates."""


def pod_security_labels(level: str) -> dict[str, str]:
    """A namespace's Pod Security labels: enforced, and warned and audited at the same level."""
    return {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn", "audit")}
