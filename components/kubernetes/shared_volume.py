"""SharedVolume: a ReadWriteMany PersistentVolume + claim for the shared POSIX file system."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.kubernetes.labels import MANAGED_LABELS
from components.options import waiting_child


@dataclass(frozen=True)
class SharedVolumeArgs:
    """Inputs of a SharedVolume. The source is cloud-specific; the rest is not. The provider and
    what the volume waits for (e.g. EFS mount targets) come through `opts`."""

    namespace: pulumi.Input[str]
    claim_name: str
    source: Mapping[str, pulumi.Input[Any]]
    """The PV's volume source, e.g. {"csi": {...}} (EFS), {"nfs": {...}}, {"hostPath": {...}}."""
    capacity: str = "100Gi"
    mount_options: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels for the volume and its claim beside the managed-by one (e.g. the stack's: after an
    interrupted run, tools/up finds the volumes this stack made and never recorded by it)."""


class SharedVolume(pulumi.ComponentResource):
    """A static PV (reclaim Retain, RWX, no storage class) bound to exactly one PVC."""

    claim_name: str
    """The PersistentVolumeClaim Ray pods mount."""
    volume_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: SharedVolumeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:kubernetes:SharedVolume", name, None, opts)
        child = waiting_child(self, opts)
        # Plain dicts (the typed overloads reject a dict built up in steps).
        pv_spec: Any = {
            "capacity": {"storage": args.capacity},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            # An empty class keeps a default StorageClass from provisioning a different volume.
            "storageClassName": "",
            "volumeMode": "Filesystem",
            **args.source,
        }
        if args.mount_options:
            pv_spec["mountOptions"] = list(args.mount_options)
        labels = {**args.labels, **MANAGED_LABELS}
        pv = k8s.core.v1.PersistentVolume(
            f"{name}-pv",
            metadata={"labels": dict(labels)},
            spec=pv_spec,
            opts=child,
        )
        pvc_metadata: Any = {
            "name": args.claim_name,
            "namespace": args.namespace,
            "labels": dict(labels),
        }
        pvc_spec: Any = {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": pv.metadata.name,
            "resources": {"requests": {"storage": args.capacity}},
        }
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-pvc", metadata=pvc_metadata, spec=pvc_spec, opts=child
        )
        self.claim_name = args.claim_name
        self.volume_name = pv.metadata.name
        self.register_outputs({"claim_name": pvc.metadata.name, "volume_name": self.volume_name})
