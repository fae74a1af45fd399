"""SharedDirOwner: a one-shot root step that hands a new shared directory to the Ray user.

A new hostPath directory or Filestore share belongs to root (mode 755), and Ray runs as uid 1000
under Pod Security `restricted`, which never allows root. So the chown runs once, as a Job in a
namespace of its own whose Pod Security level allows it, mounting the volume source directly;
the Ray namespace stays `restricted`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components.kubernetes.labels import MANAGED_LABELS, pod_security_labels
from components.options import waiting_child
from components.wiring import SHARED_VOLUME

OWNER_JOB = "own-shared-dir"
"""The owner Job's name, before the digest of its spec (`job_name`)."""


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
        metadata["name"] = pulumi.Output.from_input(spec).apply(job_name)
        k8s.batch.v1.Job(
            f"{name}-job",
            metadata=metadata,
            spec=spec,
            opts=waiting_child(self, opts, depends_on=[namespace]),
        )
        self.register_outputs({})


def job_name(spec: Mapping[str, Any]) -> str:
    """`own-shared-dir-<digest of the spec>`. A Job's pod template is immutable, so a new image,
    path or server replaces the Job. Under one fixed name that replacement is delete-then-create,
    and the provider (v4.25.0: Jobs are in its legacy skipAwait-on-delete list) does not wait for
    the delete: the create met the old Job still terminating, a server-side apply conflict, and
    `up` failed. A name per content makes a replacement create-then-delete; the same content
    keeps its name, so an `up` interrupted after the create finds its Job again rather than
    leaving a second one (as a Pulumi-generated random name would)."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"{OWNER_JOB}-{digest}"


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
