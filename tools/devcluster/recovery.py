"""One main job at a time on a state directory, and what a killed run leaves behind.

A user who runs `tools/up` twice (two terminals, a CI retry) would otherwise have two engines on
one file backend; the engine's own stack lock stops the second only once it reaches the engine,
after the cluster and images were touched. `one_run` refuses the second at once, in one line.

A run killed hard (SIGKILL, OOM, a CI timeout killing the process group) leaves two things in the
file backend that the next run must deal with the supported way:

- the engine's stack lock (`.pulumi/locks/<org>/<project>/<stack>/<id>.json`, holding the pid and
  host of the `pulumi` that wrote it): every later run fails with "the stack is currently locked"
  until `pulumi cancel` deletes it. `stale_locks` tells the locks of processes that no longer run
  on this machine from live ones (never cancelled: that would put two engines on one state);
- pending operations in the checkpoint (creates, updates, deletes the engine started but never
  saw finish): `pulumi refresh --clear-pending-creates` reads every resource back from the
  cluster and drops the creates it cannot know the outcome of. An object such a create made
  would then be unknown to the state: adopted by the next `up` only where its name is fixed and
  its fields unchanged (a new field manager co-owns them), and never for an auto-named one (the
  next `up` names it anew: two PersistentVolumes). So the objects of unfinished creates are
  deleted first (`unfinished_creates` names them from the checkpoint), then the state is
  refreshed; the next `up` creates them again, owned by the state. A deleted claim leaves its
  retained volume `Released`; `reopen_retained_volume` makes it bindable again, data kept.

The checkpoint itself is written by the engine with a rename (gocloud's file blob), so a kill
never leaves a torn state file; the e2e faults tier checks that too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.kubernetes.labels import MANAGED_LABELS, stack_labels

RUN_LOCK = "main-job.lock"
"""In the state directory: held (flock) by the running main job; holds its pid and action."""


class Busy(RuntimeError):
    """Another run holds the state directory; the message says which, in one line."""


@contextlib.contextmanager
def one_run(state: Path, action: str) -> Iterator[None]:
    """Hold the state directory for this run, or raise Busy naming the run that holds it.

    An flock: the kernel releases it when the holder dies however it dies, so a killed run
    never blocks the next one."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / RUN_LOCK, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process"
            raise Busy(
                f"another `tools/up` is running on {state} ({holder}); wait for it to finish"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {action}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()


@dataclass(frozen=True)
class EngineLock:
    path: Path
    pid: int | None
    host: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host or 'an unknown host'} since {self.since or '?'}"


def engine_locks(state: Path, stack: str) -> list[EngineLock]:
    """The file backend's locks on `stack` (any org and project in this backend)."""
    found = []
    for path in sorted((state / ".pulumi" / "locks").glob(f"*/*/{stack}/*.json")):
        try:
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = {}
        raw = raw if isinstance(raw, dict) else {}
        pid = raw.get("pid")
        found.append(
            EngineLock(
                path,
                pid if isinstance(pid, int) else None,
                str(raw.get("hostname") or ""),
                str(raw.get("timestamp") or ""),
            )
        )
    return found


def _runs_pulumi(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and os.path.basename(argv[0]).startswith(b"pulumi")


def is_stale(lock: EngineLock) -> bool:
    """The lock of a `pulumi` of this machine that no longer runs (its pid gone, or reused by
    another program). A lock from another host, or unreadable, is never called stale."""
    if lock.host != socket.gethostname() or lock.pid is None or lock.pid <= 0:
        return False
    return not _runs_pulumi(lock.pid)


@dataclass(frozen=True)
class UnfinishedCreate:
    """A Kubernetes object a killed run was creating: it may exist in the cluster, unknown to
    the state."""

    type: str
    name: str
    namespace: str | None
    volume: str | None = None
    """A claim's `spec.volumeName` as the create sent it: its volume, found even when the claim
    itself is gone."""

    @property
    def kubectl_resource(self) -> str:
        """`kind.version.group` as kubectl takes it (`namespace` for core kinds)."""
        group_version, kind = self.type.split(":")[1:3]
        group, _, version = group_version.rpartition("/")
        return kind.lower() if group == "core" else f"{kind.lower()}.{version}.{group}"

    def describe(self) -> str:
        kind = self.type.rsplit(":", 1)[-1]
        return f"{kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
PENDING_HELM_STATUSES = ("pending-install", "pending-upgrade", "pending-rollback")


@dataclass(frozen=True)
class InterruptedRelease:
    """A Helm release a killed run was installing or upgrading. Helm keeps each revision as a
    record (a Secret) and refuses, for as long as they are there, an install of a name that has
    any record ("cannot re-use a name that is still in use") and an upgrade whose latest record
    is pending ("another operation is in progress")."""

    name: str
    namespace: str
    installing: bool
    """A create: the state never recorded the release, so none of its records is one Pulumi
    knows (the kill may have come after Helm marked it deployed, or failed)."""

    @property
    def stale_records(self) -> str:
        """The label selector of the records to delete (Helm's Secret storage labels each one
        `owner=helm,name=<release>,status=<status>,version=<n>`): every record of a release being
        installed; the pending ones of a release being upgraded, so Helm upgrades from its last
        deployed revision. Deleting records deletes none of the release's objects."""
        selector = f"owner=helm,name={self.name}"
        if self.installing:
            return selector
        return f"{selector},status in ({','.join(PENDING_HELM_STATUSES)})"


def interrupted_releases(deployment: Mapping[str, Any]) -> list[InterruptedRelease]:
    """The Helm releases of the checkpoint's pending creates and updates. Deleting their stale
    records is the usual remedy (helm/helm#5595): the next install takes over the objects the
    cut-short one made (they carry Helm's ownership annotations), the next upgrade starts from the
    last deployed revision."""
    found = []
    for op in deployment.get("pending_operations") or []:
        resource = op.get("resource") or {}
        if resource.get("type") != HELM_RELEASE or op.get("type") not in ("creating", "updating"):
            continue
        inputs = resource.get("inputs") or {}
        name, ns = inputs.get("name"), inputs.get("namespace")
        if isinstance(name, str) and isinstance(ns, str):
            found.append(InterruptedRelease(name, ns, op.get("type") == "creating"))
    return found


def unfinished_creates(deployment: Mapping[str, Any]) -> list[UnfinishedCreate]:
    """The Kubernetes objects of the checkpoint's pending creates, by the name the provider gave
    them (an auto-named object's name is in its checked inputs, so it can be found again)."""
    found = []
    for op in deployment.get("pending_operations") or []:
        resource = op.get("resource") or {}
        kind = str(resource.get("type") or "")
        if op.get("type") != "creating" or not kind.startswith("kubernetes:"):
            continue
        if kind.startswith(("kubernetes:helm.sh/", "kubernetes:yaml")):
            continue  # not one object: a Helm release (interrupted_releases), a manifest group
        inputs = resource.get("inputs") or {}
        meta = inputs.get("metadata") or {}
        if isinstance(meta.get("name"), str):
            ns = meta.get("namespace")
            volume = (inputs.get("spec") or {}).get("volumeName")
            found.append(
                UnfinishedCreate(
                    kind,
                    meta["name"],
                    ns if isinstance(ns, str) else None,
                    volume
                    if isinstance(volume, str) and kind.endswith(":PersistentVolumeClaim")
                    else None,
                )
            )
    return found


def reopen_retained_volume(
    pv: Mapping[str, Any], namespace: str, claim: str
) -> list[dict[str, Any]] | None:
    """The JSON patch that makes a Retain volume reserved for the claim `namespace/claim`
    bindable again once that claim is gone (None when the volume is not that claim's, names no
    claim uid, or is not retained). Call it only after the claim is deleted.

    Deleting a bound claim leaves its static volume `Released` with `claimRef.uid` still naming
    the deleted claim: a new claim of the same name never binds to it (the next `up` would wait
    for it until the provider's timeout). Dropping the uid (and the stale resourceVersion) turns it
    into a volume pre-bound to that claim's namespace/name, which the PV controller makes
    Available and binds again; the data stays (pre-binding through `claimRef` is documented). Read
    from the volume, not from a claim that may already be gone (a recovery killed between the
    delete and the patch runs again), so it can be repeated. The `test` op makes the patch
    refuse a volume re-bound in between.
    """
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    claim_uid = ref.get("uid")
    if (
        spec.get("persistentVolumeReclaimPolicy") != "Retain"
        or (ref.get("namespace"), ref.get("name")) != (namespace, claim)
        or not claim_uid
    ):
        return None
    patch: list[dict[str, Any]] = [
        {"op": "test", "path": "/spec/claimRef/uid", "value": claim_uid},
        {"op": "remove", "path": "/spec/claimRef/uid"},
    ]
    if "resourceVersion" in ref:
        patch.append({"op": "remove", "path": "/spec/claimRef/resourceVersion"})
    return patch


def pending_operations(deployment: Mapping[str, Any]) -> list[str]:
    """`<type> <name>` of each operation a killed run left in flight (the checkpoint's
    `pending_operations`), e.g. `creating kubernetes:core/v1:Namespace ray`."""
    described = []
    for op in deployment.get("pending_operations") or []:
        resource = op.get("resource") or {}
        urn = str(resource.get("urn") or "")
        name = urn.rsplit("::", 1)[-1] if urn else "?"
        kind = str(resource.get("type") or "?")
        described.append(f"{op.get('type', '?')} {kind} {name}")
    return described


class Interrupted(Exception):
    """Ctrl-C reached the engine while it ran; it stopped after the operations in flight."""


@contextlib.contextmanager
def engine_owns_ctrl_c() -> Iterator[None]:
    """While the engine runs, Ctrl-C is the engine's: it reaches `pulumi` too (same process
    group) and pulumi stops after the operations in flight, saving the state. Were it to raise
    KeyboardInterrupt here, the Automation API would close the engine's pipes and wait 0.25 s:
    the engine, still cancelling, dies on its next write and leaves its lock and pending
    operations behind. So the interrupt is only noted, and raised as Interrupted once the
    engine has returned."""
    seen: list[int] = []

    def note(signum: int, _frame: object) -> None:
        if not seen:
            print(
                "[stack] interrupted: pulumi stops after the operations in flight "
                "(the state stays consistent)",
                file=sys.stderr,
                flush=True,
            )
        seen.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    except Exception:
        if seen:  # the engine's error is its cancellation: say that instead
            raise Interrupted() from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise Interrupted()


def volume_labels(stack: str) -> dict[str, str]:
    """The labels that mark a PersistentVolume as `stack`'s: what the sweep lists and checks."""
    return {**MANAGED_LABELS, **stack_labels(stack)}


def orphaned_volumes(
    volumes: Sequence[Mapping[str, Any]], deployment: Mapping[str, Any], stack: str
) -> list[Mapping[str, Any]]:
    """PersistentVolumes this stack labelled that its state does not know and no claim holds.

    A Ctrl-C makes the engine cancel the provider's requests in flight: a create whose request
    reached the API server but whose answer was cancelled is reported failed and never recorded,
    and the PV is auto-named, so the next up makes another (two volumes for one file system,
    found by the faults tier). Only this stack's (its label: `local` and `local-prod` share the
    cluster) and only never-bound ones: a bound volume is a claim's, and deleting a PV object
    deletes none of its data (Retain)."""
    known = {
        str(r.get("id") or "")
        for r in deployment.get("resources") or []
        if str(r.get("type") or "") == "kubernetes:core/v1:PersistentVolume"
    }
    wanted = volume_labels(stack)
    found = []
    for pv in volumes:
        meta, spec = pv.get("metadata") or {}, pv.get("spec") or {}
        labels = meta.get("labels") or {}
        ours = all(labels.get(key) == value for key, value in wanted.items())
        if not ours or meta.get("deletionTimestamp"):
            continue
        if meta.get("name") in known or (spec.get("claimRef") or {}).get("uid"):
            continue
        found.append(pv)
    return found


def torn_sidecars(state: Path) -> list[Path]:
    """The file backend's `.attrs` sidecars a hard kill left empty or half-written.

    The engine now runs with `metadata=skip` (engine.py) and writes none; a state written
    before, or by a plain `pulumi` run, has them. gocloud's file blob wrote each sidecar in
    place: a kill at that moment left it empty, and every later command failed with "failed to
    load checkpoint: EOF" (found by the faults tier). A missing sidecar is read as no
    attributes, and the checkpoint's own bytes say whether it is compressed, so deleting a torn
    one is the repair."""
    root = state / ".pulumi"
    found = []
    for path in sorted([root / "meta.yaml.attrs", *(root / "stacks").glob("*/*.attrs")]):
        try:
            json.loads(path.read_text())
        except ValueError:
            found.append(path)
        except OSError:
            continue
    return found
