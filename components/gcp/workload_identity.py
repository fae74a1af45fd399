"""WorkloadIdentity: Kubernetes ServiceAccounts with bucket-level access through GKE Workload
Identity — each KSA's own principal, or (by choice) one Google service account they impersonate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.kubernetes.labels import MANAGED_LABELS
from components.options import waiting_child

GSA_ANNOTATION = "iam.gke.io/gcp-service-account"


def ksa_principal(project_number: str, workload_pool: str, namespace: str, ksa: str) -> str:
    """The IAM principal of one Kubernetes ServiceAccount (Workload Identity Federation)."""
    return (
        f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{workload_pool}/subject/ns/{namespace}/sa/{ksa}"
    )


@dataclass(frozen=True)
class WorkloadIdentityArgs:
    """Inputs of a WorkloadIdentity. The Kubernetes provider comes through `opts.providers`;
    what the ServiceAccounts wait for (their namespace) through `opts.depends_on`."""

    project: str
    project_number: str
    workload_pool: str
    """`PROJECT.svc.id.goog`, from the cluster."""
    namespace: str
    service_accounts: Sequence[str]
    """The KSAs to create (head, workers), each bound to the bucket."""
    bucket_name: pulumi.Input[str] | None
    """The bucket they may use; None: no bucket access (identities only)."""
    bucket_role: str = "roles/storage.objectUser"
    token_service_account: str | None = None
    """The one KSA whose pods get a Kubernetes API token mounted (the head's)."""
    google_service_account_id: str | None = None
    """Set: the older path, through this Google service account."""


class WorkloadIdentity(pulumi.ComponentResource):
    """KSAs + bucket IAM members; never a project-level grant."""

    members: dict[str, pulumi.Output[str]]
    """KSA → the IAM member granted on the bucket for it (its principal, or the GSA)."""
    google_service_account_email: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:gcp:WorkloadIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        annotations: dict[str, pulumi.Input[str]] = {}
        self.members = {}
        self.google_service_account_email = None

        if args.google_service_account_id is not None:
            gsa = gcp.serviceaccount.Account(
                f"{name}-gsa",
                project=args.project,
                account_id=args.google_service_account_id,
                display_name=f"Ray pods of {args.namespace} (Workload Identity)",
                opts=child,
            )
            for ksa in args.service_accounts:
                gcp.serviceaccount.IAMMember(
                    f"{name}-{ksa}-wi-user",
                    service_account_id=gsa.name,
                    role="roles/iam.workloadIdentityUser",
                    member=f"serviceAccount:{args.workload_pool}[{args.namespace}/{ksa}]",
                    opts=child,
                )
            gsa_member = gsa.email.apply(lambda e: f"serviceAccount:{e}")
            # Signed URLs are signed by the GSA through the IAM signBlob API: it may sign as
            # itself, nothing more.
            gcp.serviceaccount.IAMMember(
                f"{name}-gsa-self-sign",
                service_account_id=gsa.name,
                role="roles/iam.serviceAccountTokenCreator",
                member=gsa_member,
                opts=child,
            )
            if args.bucket_name is not None:
                gcp.storage.BucketIAMMember(
                    f"{name}-gsa-bucket",
                    bucket=args.bucket_name,
                    role=args.bucket_role,
                    member=gsa_member,
                    opts=child,
                )
            annotations[GSA_ANNOTATION] = gsa.email
            self.google_service_account_email = gsa.email
            self.members = {ksa: gsa_member for ksa in args.service_accounts}
        else:
            for ksa in args.service_accounts:
                principal = ksa_principal(
                    args.project_number, args.workload_pool, args.namespace, ksa
                )
                if args.bucket_name is not None:
                    gcp.storage.BucketIAMMember(
                        f"{name}-{ksa}-bucket",
                        bucket=args.bucket_name,
                        role=args.bucket_role,
                        member=principal,
                        opts=child,
                    )
                self.members[ksa] = pulumi.Output.from_input(principal)

        for ksa in args.service_accounts:
            metadata: Any = {
                "name": ksa,
                "namespace": args.namespace,
                "labels": dict(MANAGED_LABELS),
            }
            if annotations:
                metadata["annotations"] = dict(annotations)
            k8s.core.v1.ServiceAccount(
                f"{name}-{ksa}",
                metadata=metadata,
                # Workload Identity needs no Kubernetes token; only the head's autoscaler
                # calls the Kubernetes API.
                automount_service_account_token=ksa == args.token_service_account,
                opts=waiting_child(self, opts),
            )
        self.register_outputs(
            {"members": self.members, "google_service_account": self.google_service_account_email}
        )
