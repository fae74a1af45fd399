"""The identity Ray runs as on GKE: Workload Identity for the head's and the workers'
Kubernetes ServiceAccounts (bound to the bucket directly, or through a Google service account),
and what pods need to reach GKE's metadata server."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp

from components.gcp.workload_identity import WorkloadIdentity, WorkloadIdentityArgs
from components.kuberay.network_policy import egress_to
from infra.clouds.adapter import (
    HEAD_SERVICE_ACCOUNT,
    WORKER_SERVICE_ACCOUNT,
    KubernetesTarget,
    WiringPart,
    with_provider,
)
from infra.clouds.gcp.lookup import GkeCluster
from infra.clouds.gcp.settings import GcpSettings
from infra.settings import Settings

METADATA_SERVER_SELECTOR = {"iam.gke.io/gke-metadata-server-enabled": "true"}


def metadata_server_egress() -> tuple[Mapping[str, object], ...]:
    """Workload Identity's tokens come from the GKE metadata server, reached at
    169.254.169.254:80 or 169.254.169.252:988 depending on the cluster's dataplane: both."""
    return (egress_to("169.254.169.254/32", 80), egress_to("169.254.169.252/32", 988))


def workload_identity(
    settings: Settings,
    block: GcpSettings,
    cluster: GkeCluster,
    *,
    bucket_name: pulumi.Input[str] | None,
    provider: gcp.Provider,
    target: KubernetesTarget,
) -> WiringPart:
    """The head's and the workers' KSAs, granted `bucket_name` (when there is a bucket)."""
    wi = block.workload_identity
    # gke_problems refuses a cluster with Workload Identity off before anything is built.
    assert cluster.workload_pool is not None
    identity = WorkloadIdentity(
        "ray-wi",
        WorkloadIdentityArgs(
            project=block.project,
            project_number=cluster.project_number,
            workload_pool=cluster.workload_pool,
            namespace=target.namespace,
            service_accounts=(HEAD_SERVICE_ACCOUNT, WORKER_SERVICE_ACCOUNT),
            bucket_name=bucket_name,
            bucket_role=wi.bucket_role,
            token_service_account=HEAD_SERVICE_ACCOUNT,
            google_service_account_id=(
                (wi.service_account_id or f"ray-{settings.stack}"[:30].rstrip("-"))
                if wi.google_service_account
                else None
            ),
        ),
        opts=with_provider(provider, target.component_opts()),
    )
    outputs: dict[str, pulumi.Input[str]] = {
        "workloadIdentityMembers": pulumi.Output.json_dumps(identity.members)
    }
    if identity.google_service_account_email is not None:
        outputs["googleServiceAccount"] = identity.google_service_account_email
    return WiringPart(
        wiring={
            "service_account_name": HEAD_SERVICE_ACCOUNT,
            "worker_service_account_name": WORKER_SERVICE_ACCOUNT,
            # Standard node pools may run without the GKE metadata server (then Workload
            # Identity silently fails); Autopilot runs it on every node.
            "node_selector": {} if cluster.autopilot else dict(METADATA_SERVER_SELECTOR),
        },
        dependencies=(identity,),
        outputs=outputs,
    )
