"""The identity Ray runs as on a local cluster: the head's and the workers' ServiceAccounts, no
cloud identity behind them."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from components.kubernetes.labels import MANAGED_LABELS
from infra.clouds.adapter import (
    HEAD_SERVICE_ACCOUNT,
    WORKER_SERVICE_ACCOUNT,
    KubernetesTarget,
    WiringPart,
)


def service_accounts(target: KubernetesTarget) -> WiringPart:
    accounts = tuple(
        k8s.core.v1.ServiceAccount(
            f"ray-sa-{account}",
            metadata={
                "name": account,
                "namespace": target.namespace,
                "labels": dict(MANAGED_LABELS),
            },
            # Only the head's autoscaler calls the Kubernetes API.
            automount_service_account_token=account == HEAD_SERVICE_ACCOUNT,
            opts=target.resource_opts(),
        )
        for account in (HEAD_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT)
    )
    return WiringPart(
        wiring={
            "service_account_name": HEAD_SERVICE_ACCOUNT,
            "worker_service_account_name": WORKER_SERVICE_ACCOUNT,
        },
        dependencies=accounts,
    )
