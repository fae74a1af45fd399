"""Local adapter: any kind/minikube cluster, or the project's own control plane (tools/)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.raycluster_spec import RAY_GID, RAY_UID
from components.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import MANAGED_LABELS, StorageWiring
from infra.clouds.adapter import (
    RAY_SERVICE_ACCOUNT,
    SHARED_CLAIM,
    CloudAdapter,
    CloudStorage,
    KubernetesTarget,
)
from infra.clouds.local.settings import LocalSettings
from infra.settings import Settings


def own_shared_dir(image: str, mount_path: str) -> dict[str, object]:
    """A hostPath directory is created root-owned; Ray runs as uid 1000. Fix that first."""
    return {
        "name": "own-shared-dir",
        "image": image,
        "command": [
            "/bin/sh",
            "-c",
            f"chown {RAY_UID}:{RAY_GID} {mount_path} && chmod 2775 {mount_path}",
        ],
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "runAsGroup": 0},
        "volumeMounts": [{"name": "shared", "mountPath": mount_path}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "50m", "memory": "64Mi"},
        },
    }


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
        sa = k8s.core.v1.ServiceAccount(
            "ray-sa",
            metadata={
                "name": RAY_SERVICE_ACCOUNT,
                "namespace": target.namespace,
                "labels": dict(MANAGED_LABELS),
            },
            opts=target.resource_opts(),
        )
        if not fs.enabled:
            return CloudStorage(StorageWiring(service_account_name=RAY_SERVICE_ACCOUNT), [sa])
        volume = SharedVolume(
            "shared",
            SharedVolumeArgs(
                namespace=target.namespace,
                claim_name=SHARED_CLAIM,
                source={"hostPath": {"path": self.local.host_path, "type": "DirectoryOrCreate"}},
                capacity=fs.size,
            ),
            opts=target.component_opts(),
        )
        wiring = StorageWiring(
            service_account_name=RAY_SERVICE_ACCOUNT,
            shared_claim_name=SHARED_CLAIM,
            shared_mount_path=fs.mount_path,
            init_containers=(own_shared_dir(settings.ray.image, fs.mount_path),),
        )
        outputs: dict[str, pulumi.Input[str]] = {
            "sharedMountPath": fs.mount_path,
            "sharedHostPath": self.local.host_path,
        }
        return CloudStorage(wiring, [sa, volume], outputs)
