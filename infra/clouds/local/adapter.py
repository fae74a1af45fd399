"""Local adapter: any kind/minikube cluster, or the project's own control plane (tools/)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.raycluster_spec import RAY_GID, RAY_UID
from components.shared_dir_owner import SharedDirOwner, SharedDirOwnerArgs, wait_for_shared_dir
from components.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import MANAGED_LABELS, StorageWiring
from infra.clouds.adapter import (
    HEAD_SERVICE_ACCOUNT,
    SHARED_CLAIM,
    WORKER_SERVICE_ACCOUNT,
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
)
from infra.clouds.local.settings import LocalSettings
from infra.settings import Settings


class LocalAdapter(CloudAdapter):
    """No cloud: a hostPath-backed ReadWriteMany volume (single node) and the Ray ServiceAccount."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        block = settings.cloud_settings
        assert isinstance(block, LocalSettings)
        self.local = block

    def kubernetes_provider(self) -> k8s.Provider:
        """The ambient kubeconfig ($KUBECONFIG) unless the stack names one; no path lands in
        state unless the stack sets it."""
        return k8s.Provider("local", kubeconfig=self.local.kubeconfig, context=self.local.context)

    def storage_and_identity(self, target: KubernetesTarget) -> CloudStorage:
        settings = self.settings
        fs = settings.storage.shared_filesystem
        accounts = [
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
        ]
        identity = StorageWiring(
            service_account_name=HEAD_SERVICE_ACCOUNT,
            worker_service_account_name=WORKER_SERVICE_ACCOUNT,
        )
        if not fs.enabled:
            return CloudStorage(identity, list(accounts))
        host_dir = {"hostPath": {"path": self.local.host_path, "type": "DirectoryOrCreate"}}
        volume = SharedVolume(
            "shared",
            SharedVolumeArgs(
                namespace=target.namespace,
                claim_name=SHARED_CLAIM,
                source=host_dir,
                capacity=fs.size,
            ),
            opts=target.component_opts(),
        )
        SharedDirOwner(
            "shared-owner",
            SharedDirOwnerArgs(
                namespace=f"{target.namespace}-prep",
                # hostPath volumes need `privileged`; only this one-shot Job runs there.
                pod_security="privileged",
                image=settings.ray.image,
                source=host_dir,
                uid=RAY_UID,
                gid=RAY_GID,
            ),
            opts=pulumi.ResourceOptions(providers=[target.provider]),
        )
        wiring = StorageWiring(
            service_account_name=HEAD_SERVICE_ACCOUNT,
            worker_service_account_name=WORKER_SERVICE_ACCOUNT,
            shared_claim_name=SHARED_CLAIM,
            shared_mount_path=fs.mount_path,
            init_containers=(wait_for_shared_dir(settings.ray.image, fs.mount_path),),
        )
        outputs: dict[str, pulumi.Input[str]] = {
            "sharedMountPath": fs.mount_path,
            "sharedHostPath": self.local.host_path,
        }
        return CloudStorage(wiring, [*accounts, volume], outputs)
