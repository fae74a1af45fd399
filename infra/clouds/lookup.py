"""What every cloud's lookups share: the provider's own words for a failure, and a kubeconfig
that authenticates through the cloud's exec plugin (no long-lived credentials in state)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def provider_reason(err: Exception) -> str:
    """The last line of a data-source failure: the provider's own words."""
    text = str(err).strip()
    return text.splitlines()[-1] if text else repr(err)


def exec_kubeconfig(
    *, name: str, server: str, certificate_authority: str, exec_: Mapping[str, Any]
) -> str:
    """A one-cluster kubeconfig whose user runs `exec_` (client.authentication.k8s.io/v1beta1)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": certificate_authority,
                    },
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", **exec_}
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        },
        sort_keys=True,
    )
