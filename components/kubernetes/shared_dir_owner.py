"""SharedDirOwner: a one-shot root step that hands a new shared directory to the Ray user.

A new hostPath directory or Filestore share belongs to root (mode 755), and Ray runs as uid 1000
under Pod Security `restricted`, which never allows root. So the chown runs once, as a Job in a
namespace of its own whose Pod Security level allows it, mounting the volume source directly;
the Ray namespace stays `restricted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components.kubernetes.labels import MANAGED_LABELS, pod_security_labels
from components.options import waiting_child
from components.wiring import SHARED_VOLUME


@dataclass(frozen=True)
class SharedDirOwnerArgs:
    """Inputs of a SharedDirOwner. The Kubernetes provider comes through `opts.providers`."""

    namespace: str
    """The Job's own namespace (created here)."""
    pod_security: Literal["privileged", "baseline"]
    """`privileged` for a hostPath source, `baseline` (root allowed) for NFS."""
    image: str
    source: Mapping[str, Any]
    """The pod volume source, e.g. {"hostPath": {...}} or {"nfs": {"server": ..., "path": ...}}."""
    uid: int
    gid: int


class SharedDirOwner(pulumi.ComponentResource):
    """Namespace + Job: `chown uid:gid` and `chmod 2775` on the volume's root, once."""

    def __init__(
        self, name: str, args: SharedDirOwnerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ray-platform:kubernetes:SharedDirOwner", name, None, opts)
        level = args.pod_security
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": args.namespace,
                "labels": {**MANAGED_LABELS, **pod_security_labels(level)},
            },
            opts=waiting_child(self, opts),
        )
        script = (
            f"chown {args.uid}:{args.gid} /shared && chmod 2775 /shared && "
            "echo shared directory handed to the Ray user"
        )
        resources = {"cpu": "50m", "memory": "64Mi"}
        metadata: Any = {
            "name": "own-shared-dir",
            "namespace": args.namespace,
            "labels": dict(MANAGED_LABELS),
            # Ray pods wait for the directory themselves (an init container), so `up` need not
            # wait for a node to run this; a cluster without nodes would never finish it.
            "annotations": {"pulumi.com/skipAwait": "true"},
        }
        spec: Any = {
            "backoffLimit": 6,
            "template": {
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "chown",
                            "image": args.image,
                            "command": ["/bin/sh", "-c", script],
                            "securityContext": {
                                "runAsUser": 0,
                                "runAsGroup": 0,
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                # FSETID: without it chmod after the chown drops the
                                # setgid bit (root is not in the new group).
                                "capabilities": {
                                    "drop": ["ALL"],
                                    "add": ["CHOWN", "FOWNER", "FSETID"],
                                },
                            },
                            "volumeMounts": [{"name": SHARED_VOLUME, "mountPath": "/shared"}],
                            "resources": {"requests": resources, "limits": resources},
                        }
                    ],
                    "volumes": [{"name": SHARED_VOLUME, **args.source}],
                }
            },
        }
        k8s.batch.v1.Job(
            f"{name}-job",
            metadata=metadata,
            spec=spec,
            opts=waiting_child(self, opts, depends_on=[namespace]),
        )
        self.register_outputs({})


def wait_for_shared_dir(image: str, mount_path: str) -> dict[str, object]:
    """Ray starts once the one-shot owner Job has handed it the directory (it may run later
    than the pods are created: `up` does not wait for it)."""
    return {
        "name": "wait-for-shared-dir",
        "image": image,
        "command": [
            "/bin/sh",
            "-c",
            f"until [ -w {mount_path} ]; do echo waiting for {mount_path}; sleep 2; done",
        ],
        "volumeMounts": [{"name": SHARED_VOLUME, "mountPath": mount_path}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "50m", "memory": "64Mi"},
        },
    }
