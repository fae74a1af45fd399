"""Is the deployed RayCluster usable, and if it cannot become so, why (in one line)?

`tools/up` returns when the head and the minimum number of workers of every group are Running
and Ready. A head that cannot start (its image missing, unschedulable, crash-looping, its
shared-packages install failing) fails `up` with the reason from the pod's status instead of
waiting out the timeout. `verdict` is pure (objects in, decision out) and unit-tested; `wait`
polls the cluster.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FATAL_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
"""Container waiting reasons that do not resolve by themselves."""
GRACE = 30.0
"""Seconds a condition must last before it counts: KubeRay may skip writing observedGeneration
when nothing else in the status changes, and the scheduler retries an Unschedulable pod only
after a backoff once the pods it waits for are gone."""
RESTARTS_FATAL = 3
"""An init container (the shared-packages installer) failing this often will not succeed."""
INSTALLER = "install-shared-packages"
"""The head's init container that installs ray.sharedPackages
(components/kuberay/raycluster_spec.py). It retries in place with backoff instead of failing (a
failed head is replaced at once by KubeRay), so its failure shows in its log, not in the pod's
status."""
INSTALLER_FAILED_ATTEMPTS = 2
"""`up` gives up once the installer has failed this often: a wrong package set does not heal."""


@dataclass(frozen=True)
class Verdict:
    ready: bool
    failure: str | None
    """One line: why it cannot become ready (None while it still may)."""
    waiting_for: str
    """One line: what it waits for now (progress for people)."""


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def pod_problem(pod: Mapping[str, Any], *, terminating_elsewhere: bool = False) -> str | None:
    """The reason a pod will not start by itself, or None. A pod being deleted has none (KubeRay
    replaces pods on a spec change), and Unschedulable is only final while no other pod is
    terminating: on a small node the new head waits for the old pods' resources."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    name = meta.get("name", "?")
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            if terminating_elsewhere:
                return None
            return f"pod {name} cannot be scheduled: {cond.get('message', '').strip()}"
    statuses = [
        *(("init container", s) for s in status.get("initContainerStatuses") or []),
        *(("container", s) for s in status.get("containerStatuses") or []),
    ]
    for kind, cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING:
            message = " ".join(str(waiting.get("message", "")).split())[:300]
            return f"pod {name} {kind} {cs.get('name')}: {reason}: {message}".rstrip(": ")
        terminated = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get(
            "terminated"
        )
        if (
            kind == "init container"
            and terminated
            and terminated.get("exitCode", 0) != 0
            and int(cs.get("restartCount", 0)) >= RESTARTS_FATAL
        ):
            message = " ".join(str(terminated.get("message", "")).split())[:300]
            return (
                f"pod {name} init container {cs.get('name')} failed "
                f"{cs.get('restartCount')} times (exit {terminated.get('exitCode')}): {message}"
            ).rstrip(": ")
    if status.get("phase") == "Failed":
        return f"pod {name} failed: {status.get('reason', '')} {status.get('message', '')}".strip()
    return None


def verdict(
    pods: Sequence[Mapping[str, Any]],
    min_workers: Mapping[str, int],
    *,
    failed_heads: int = 0,
    reconciled: bool = True,
    settling: bool = False,
) -> Verdict:
    """Decide from the RayCluster's pods (labels ray.io/node-type and ray.io/group).
    `reconciled`: KubeRay has seen the RayCluster's latest spec (status.observedGeneration):
    before that, the pods running are the previous spec's and prove nothing."""
    if not reconciled:
        return Verdict(False, None, "KubeRay to reconcile the new RayCluster spec")
    # While old pods terminate (or did a moment ago), a pod waiting for their resources is no
    # failure yet.
    terminating = settling or any((p.get("metadata") or {}).get("deletionTimestamp") for p in pods)
    pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]

    def problem(pod: Mapping[str, Any]) -> str | None:
        return pod_problem(pod, terminating_elsewhere=terminating)

    heads = [p for p in pods if p["metadata"].get("labels", {}).get("ray.io/node-type") == "head"]
    if not heads:
        return Verdict(False, None, "the head pod to be created")
    if not any(_ready(p) for p in heads):
        for pod in heads:
            found = problem(pod)
            if found:
                return Verdict(False, found, "")
        if failed_heads >= RESTARTS_FATAL:
            return Verdict(
                False, f"the head pod was recreated {failed_heads} times without becoming ready", ""
            )
        return Verdict(False, None, "the head pod to be Running and Ready")
    for group, wanted in min_workers.items():
        members = [
            p
            for p in pods
            if p["metadata"].get("labels", {}).get("ray.io/group") == group
            and p["metadata"].get("labels", {}).get("ray.io/node-type") == "worker"
        ]
        ready = sum(1 for p in members if _ready(p))
        if ready < wanted:
            for pod in members:
                found = problem(pod)
                if found:
                    return Verdict(False, found, "")
            return Verdict(False, None, f"worker group {group}: {ready}/{wanted} ready")
    return Verdict(True, None, "")


def installer_failure(log: str) -> str | None:
    """One line from the installer's log when it has failed INSTALLER_FAILED_ATTEMPTS times:
    pip's last error and the installer's own advice; None while it may still succeed."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    # The attempt number from the installer's own line: a long pip log may push the earlier
    # attempts' lines out of the tail that is read.
    attempts = [
        int(m.group(1))
        for ln in lines
        if (m := re.match(r"shared packages: attempt (\d+) failed", ln))
    ]
    if not attempts or attempts[-1] < INSTALLER_FAILED_ATTEMPTS:
        return None
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    # Without pip's ERROR line the failure came before pip ran (the directory could not be made:
    # a read-only or full file system): the line the failing command printed last says why.
    before = [
        ln
        for ln in lines[: max(i for i, ln in enumerate(lines) if ln.startswith("shared packages:"))]
        if not ln.startswith("shared packages:")
    ]
    cause = errors[-1] if errors else (before[-1] if before else f"attempt {attempts[-1]} failed")
    return (
        f"the shared packages cannot be installed ({attempts[-1]} attempts): {cause} — fix "
        "ray.sharedPackages (or ray.packageIndex) and run up again"
    )


class NotReady(RuntimeError):
    """The RayCluster cannot become ready (or did not in time); the message is one line."""


def _installer(kube: Any, namespace: str, pods: Sequence[Mapping[str, Any]]) -> Verdict | None:
    """A head stuck in a failing shared-packages install, read from the installer's log."""
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
        running = [
            s
            for s in statuses
            if s.get("name") == INSTALLER and (s.get("state") or {}).get("running")
        ]
        if not running:
            continue
        name = pod["metadata"]["name"]
        log = kube.text(
            f"/api/v1/namespaces/{namespace}/pods/{name}/log?container={INSTALLER}&tailLines=200"
        )
        failure = installer_failure(log or "")
        if failure:
            return Verdict(False, f"pod {name}: {failure}", "")
    return None


def wait(
    kubeconfig: Path,
    namespace: str,
    cluster: str,
    min_workers: Mapping[str, int],
    *,
    timeout: float,
    say: Any = print,
) -> float:
    """Poll until `verdict` is ready (returns seconds waited) or raise NotReady."""
    from tools.devcluster.kube import Kube

    kube = Kube(kubeconfig)
    selector = f"ray.io/cluster={cluster}"
    begin = time.monotonic()
    last = ""
    seen_heads: set[str] = set()
    generation_seen: Any = None
    generation_since = begin
    # The first moments count as settling too: the shared directory's ownership Job, or pods of
    # a previous spec, may hold resources the head waits for.
    last_terminating = begin
    while True:
        raycluster = kube.get(f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters/{cluster}") or {}
        generation = (raycluster.get("metadata") or {}).get("generation")
        observed = (raycluster.get("status") or {}).get("observedGeneration")
        now = time.monotonic()
        if generation != generation_seen:
            generation_seen, generation_since = generation, now
        # KubeRay deletes the pods of a replaced spec in its first reconcile; when only
        # observedGeneration would change in the status, it may not write it at all.
        reconciled = generation is not None and (
            observed == generation or now - generation_since > GRACE
        )
        pods = kube.items(f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
        if any((p.get("metadata") or {}).get("deletionTimestamp") for p in pods):
            last_terminating = now
        for pod in pods:
            # Heads created for the current spec (a spec change replaces the head: not a failure).
            meta = pod["metadata"]
            is_head = meta.get("labels", {}).get("ray.io/node-type") == "head"
            if reconciled and is_head and not meta.get("deletionTimestamp"):
                seen_heads.add(meta["name"])
        found = verdict(
            pods,
            min_workers,
            failed_heads=max(0, len(seen_heads) - 1),
            reconciled=reconciled,
            settling=now - last_terminating < GRACE,
        )
        if found.ready:
            return time.monotonic() - begin
        if not found.failure and reconciled:
            found = _installer(kube, namespace, pods) or found
        if found.failure:
            raise NotReady(f"RayCluster {namespace}/{cluster} cannot become ready: {found.failure}")
        if found.waiting_for != last:
            say(f"waiting for {found.waiting_for}")
            last = found.waiting_for
        if time.monotonic() - begin > timeout:
            raise NotReady(
                f"RayCluster {namespace}/{cluster} not ready after {timeout:.0f}s: "
                f"still waiting for {found.waiting_for}"
            )
        time.sleep(2)
