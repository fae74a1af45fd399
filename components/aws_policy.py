"""Small IAM policy pieces shared by the AWS components."""

from __future__ import annotations

from typing import Any

import pulumi


def deny_insecure_transport(
    resource: pulumi.Input[Any], *, principal: Any, action: str
) -> dict[str, Any]:
    """A resource-policy statement refusing every request not made over TLS."""
    return {
        "Sid": "DenyNonTls",
        "Effect": "Deny",
        "Principal": principal,
        "Action": action,
        "Resource": resource,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
