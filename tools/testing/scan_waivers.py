"""The Checkov failures the platform accepts, each with its reason.

Resources are Checkov's ids, `Kind.namespace.name`: the RayCluster's Pods are `Pod.ray.ray-head`
and `Pod.ray.ray-<group>-worker` (tools/testing/scan.py builds them from the pod templates). Keep
the list short and true: tests/scan/test_manifests.py fails on a waiver that no longer matches.

It names no type of tools/testing/scan.py (which imports it): a waiver matches anything with a
check id, a resource and a stack, so the two modules do not import each other.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Protocol


class Finding(Protocol):
    """What a waiver is matched on (tools.testing.scan.Failure)."""

    @property
    def stack(self) -> str: ...
    @property
    def check_id(self) -> str: ...
    @property
    def resource(self) -> str: ...


RAY_PODS = "Pod.ray.ray-*"
HEAD_POD = "Pod.ray.ray-head"
SHARED_DIR_JOB = "Job.ray-prep.own-shared-dir-*"
"""Named by the digest of its spec (components.kubernetes.shared_dir_owner.job_name)."""
DEV_STACKS = ("dev", "local", "gke-dev")
"""Stacks in `mode: dev`."""


@dataclass(frozen=True)
class Waiver:
    """One accepted failure: a check on the resources matching any of `resources`."""

    check_id: str
    resources: tuple[str, ...]
    """fnmatch patterns on Checkov's resource id."""
    reason: str
    stacks: tuple[str, ...] = ()
    """Only in these stacks (empty: every stack)."""

    def matches(self, failure: Finding) -> bool:
        return (
            failure.check_id == self.check_id
            and any(fnmatch.fnmatchcase(failure.resource, r) for r in self.resources)
            and (not self.stacks or failure.stack in self.stacks)
        )


def _w(check_id: str, resources: str | tuple[str, ...], reason: str, *stacks: str) -> Waiver:
    return Waiver(
        check_id, (resources,) if isinstance(resources, str) else resources, reason, stacks
    )


# fmt: off
WAIVERS: tuple[Waiver, ...] = (
    _w("CKV_K8S_22", RAY_PODS, "readOnlyRootFilesystem: Ray, JupyterLab and user code write the root file system outside /tmp/ray (~/.cache/pip and uv, ~/.local, /tmp)"),  # noqa: E501
    _w("CKV_K8S_40", RAY_PODS, "high UID: rayproject/ray images run as user ray, uid 1000, the owner of the shared file system (EFS access point, Filestore/hostPath chown)"),  # noqa: E501
    _w("CKV_K8S_8", RAY_PODS, "livenessProbe: KubeRay injects exec probes into the Ray container (ENABLE_PROBES_INJECTION, on by default); sidecars have none upstream"),  # noqa: E501
    _w("CKV_K8S_9", RAY_PODS, "readinessProbe: KubeRay injects exec probes into the Ray container (ENABLE_PROBES_INJECTION, on by default); sidecars have none upstream"),  # noqa: E501
    _w("CKV_K8S_38", HEAD_POD, "service-account token: the in-tree autoscaler sidecar patches Pods and the RayCluster through the API with the head's token"),  # noqa: E501
    _w("CKV_K8S_43", (RAY_PODS, SHARED_DIR_JOB), "image digest: dev mode runs the generic rayproject/ray:<ray.version> tag by design; prod images are pinned by @sha256 (settings enforce it)", *DEV_STACKS),  # noqa: E501
    _w("CKV_K8S_15", (RAY_PODS, SHARED_DIR_JOB), "imagePullPolicy Always: asked only of tag images; dev runs the generic tag by design (see CKV_K8S_43) and prod pins digests", *DEV_STACKS),  # noqa: E501
    _w("CKV_K8S_23", SHARED_DIR_JOB, "root: the one-shot Job chowns the NFS/hostPath export to uid 1000, which needs uid 0; it runs in its own baseline namespace ray-prep", "local", "gke-dev", "gke-prod"),  # noqa: E501
    _w("CKV_K8S_40", SHARED_DIR_JOB, "high UID: the one-shot Job chowns the NFS/hostPath export to uid 1000, which needs uid 0", "local", "gke-dev", "gke-prod"),  # noqa: E501
    _w("CKV_K8S_25", SHARED_DIR_JOB, "added capabilities: the chown Job drops ALL and adds back only CHOWN, FOWNER and FSETID, the three chown/chmod 2775 need", "local", "gke-dev", "gke-prod"),  # noqa: E501
)
# fmt: on


def waiver_for(failure: Finding) -> Waiver | None:
    """The waiver accepting this failure, if any."""
    return next((w for w in WAIVERS if w.matches(failure)), None)
