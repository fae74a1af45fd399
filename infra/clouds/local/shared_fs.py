"""The shared file system on a local cluster: a hostPath directory of the single node, behind a
ReadWriteMany claim, handed to the Ray user by a one-shot Job."""

from __future__ import annotations

import pulumi

from components.kuberay.image import RAY_GID, RAY_UID
from components.kubernetes.labels import stack_labels
from components.kubernetes.shared_dir_owner import (
    SharedDirOwner,
    SharedDirOwnerArgs,
    wait_for_shared_dir,
)
from components.kubernetes.shared_volume import SharedVolume, SharedVolumeArgs
from components.wiring import SHARED_VOLUME
from infra.clouds.adapter import SHARED_CLAIM, KubernetesTarget, WiringPart
from infra.clouds.local.settings import LocalSettings
from infra.settings import Settings


def host_path_volume(
    settings: Settings, local: LocalSettings, target: KubernetesTarget
) -> WiringPart:
    fs = settings.storage.shared_filesystem
    host_dir = {"hostPath": {"path": local.host_path, "type": "DirectoryOrCreate"}}
    volume = SharedVolume(
        SHARED_VOLUME,
        SharedVolumeArgs(
            namespace=target.namespace,
            claim_name=SHARED_CLAIM,
            source=host_dir,
            capacity=fs.size,
            labels=stack_labels(settings.stack),
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
    return WiringPart(
        wiring={
            "shared_claim_name": SHARED_CLAIM,
            "shared_mount_path": fs.mount_path,
            "init_containers": (wait_for_shared_dir(settings.ray.image, fs.mount_path),),
        },
        dependencies=(volume,),
        outputs={"sharedMountPath": fs.mount_path, "sharedHostPath": local.host_path},
    )
