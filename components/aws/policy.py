"""Small IAM policy pieces shared by the AWS components."""

from __future__ import annotations

from typing import Any

import pulumi


def policy_json(*statements: pulumi.Input[Any]) -> pulumi.Output[str]:
    """An IAM policy document (2012-10-17) as JSON, keys sorted so diffs stay quiet."""
    return pulumi.Output.json_dumps(
        {"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True
    )


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
