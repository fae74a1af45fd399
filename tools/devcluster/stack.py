"""The main job: `pulumi up --stack local` with the real engine, offline.

    python -m tools.devcluster.stack [up|preview|destroy|outputs|down] [--stack local] [--state DIR]
                          [--cluster-dir DIR]

With no $KUBECONFIG it first starts the project's local control plane (etcd, kube-apiserver,
kube-controller-manager, the KubeRay operator and MinIO on loopback; `down` stops it) and turns
the local stack's artifact bucket on with that MinIO: `storage.artifactBucket.enabled: true` and
`ray-platform:local.objectStore` (endpoint, bucket, access key) in the work directory's copy of
the stack file, the secret key as an encrypted Pulumi secret there (never in the repository).
With $KUBECONFIG set (kind, minikube) the stack file's settings are used as they are. State lives
in a file backend under the user cache directory.

The state is kept in step with the cluster: after each deploy the UID of the cluster's
kube-system namespace (created once per cluster) is recorded next to the state. When the cluster
answering now has another UID (a fresh local control plane after `down`, or another cluster) or
none was recorded, the stack is refreshed before up/destroy (and preview refreshes), so objects
the state lists but the cluster lacks are created again instead of being reported unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from components.kubernetes.labels import STACK_LABEL
from infra.cache import cache_root
from tools import crd_guard
from tools.build import BuildError
from tools.devcluster import engine, localcluster, readiness, recovery
from tools.devcluster.kube import Kube

READY_TIMEOUT = 900.0
"""Seconds `up` waits for the RayCluster (head and minimum workers Running and Ready); a cold
node pulls the Ray image and installs the shared packages first."""
JUPYTER_TOKEN_KEY = engine.JUPYTER_TOKEN_KEY
RAY_KEY = "ray-platform:ray"
IDENTITY_FILE = "clusters.json"
"""In the state directory: stack name -> kube-system UID of the cluster it was deployed to."""
_BOOKKEEPING_TYPES = ("pulumi:pulumi:Stack", "pulumi:providers:")
STORAGE_KEY = "ray-platform:storage"
LOCAL_KEY = "ray-platform:local"
MODE_KEY = "ray-platform:mode"
LOCAL_STACKS = ("local", "local-prod")
"""The stacks this job deploys: cloud local, into its own file backend (cli/outputs.py reads
them there too)."""
APP_REPOSITORY = "ray-platform/app"
"""On the node's registry: where a prod stack's application image is pushed
(`local.imageRepository`, exported as `imageRepository` for `ray-platform image build`)."""
SECRET_KEY_PATH = "ray-platform:local.objectStore.secretAccessKey"
"""Set with `path=True` as a secret: encrypted in the work directory's stack file."""


def _say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    """The cluster the job deploys to."""

    kubeconfig: Path | None
    object_store: localcluster.ObjectStore | None = None
    """The project's control plane's MinIO; None when $KUBECONFIG points elsewhere (or the
    control plane runs none): then the stack file's bucket settings stay as they are."""
    node: localcluster.ClusterStatus | None = None
    """The project's cluster, when it has a node (pods run): its registry and package mirror."""
    own: bool = False
    """The project's own local cluster (not $KUBECONFIG's): tools/up may clean up after itself
    there, never on a cluster someone else runs."""


def _target(start_cluster: bool, cluster_dir: Path | None, *, with_node: bool = True) -> Target:
    given = os.environ.get("KUBECONFIG")
    if given and _is_local_cluster(Path(given), cluster_dir):
        # `eval "$(tools/up env)"` exports the project's own cluster: still the local cluster.
        given = None
    if given:
        _say(f"using KUBECONFIG={given}; the stack file's bucket settings apply as they are")
        return Target(Path(given))
    if start_cluster:
        what = "the local cluster (control plane and node)" if with_node else "the control plane"
        _say(f"no KUBECONFIG: starting {what}")
        kubeconfig = localcluster.up(cluster_dir, with_node=with_node)
    else:
        kubeconfig = localcluster.kubeconfig(cluster_dir)
    status = localcluster.status(cluster_dir)
    running_node = status if status.node else None
    try:
        store = localcluster.object_store(cluster_dir)
    except localcluster.LocalClusterError:
        _say("the local control plane runs no object store; the bucket stays as the stack says")
        return Target(kubeconfig, node=running_node, own=True)
    _say(f"artifact bucket: s3://{store.bucket} on the control plane's MinIO at {store.endpoint}")
    return Target(kubeconfig, store, running_node, own=True)


def _is_local_cluster(kubeconfig: Path, cluster_dir: Path | None) -> bool:
    try:
        return kubeconfig.resolve() == localcluster.state.layout(cluster_dir).kubeconfig
    except OSError:
        return False


# ------------------------------------------------------------------------------------ the node


def is_prod(stack_config: Mapping[str, Any]) -> bool:
    return stack_config.get(MODE_KEY) == "prod"


def node_overrides(
    stack_config: Mapping[str, Any],
    package_index: str | None,
    shared_dir: Path,
    api_server_port: int | None = None,
) -> dict[str, Any]:
    """Top-level stack-file keys for a stack deployed onto the project's own node: the pods'
    package index (the node's mirror of PyPI: pods have no route off the machine; not for a
    prod stack, which installs nothing and whose closed egress must not open to the mirror),
    the shared file system inside the cluster's state directory (so `down` leaves nothing
    behind), the API server's port (which closed egress must leave open), and JupyterLab on
    (its token is set as a secret by `configure`)."""
    ray = dict(stack_config.get(RAY_KEY) or {})
    if package_index and not is_prod(stack_config):
        ray["packageIndex"] = package_index
    local = dict(stack_config.get(LOCAL_KEY) or {})
    local["hostPath"] = str(shared_dir)
    if api_server_port is not None:
        local["apiServerPort"] = api_server_port
    return {RAY_KEY: ray, LOCAL_KEY: local}


def api_server_port(kubeconfig: Path) -> int | None:
    """The port in the kubeconfig's server URL: the one the API server's endpoints (what pods
    reach behind the `kubernetes` Service) listen on, on the project's own cluster."""
    import yaml

    try:
        clusters = (yaml.safe_load(kubeconfig.read_text()) or {}).get("clusters") or []
    except (OSError, yaml.YAMLError):
        return None  # the stack's own (or kind's 6443) then
    server = str(((clusters[0] if clusters else {}).get("cluster") or {}).get("server", ""))
    port = urllib.parse.urlsplit(server).port
    return int(port) if port else None


class BadArgument(RuntimeError):
    """A command-line argument the stack cannot take; the message is one line."""


class DoesNotFit(RuntimeError):
    """The stack's minimum RayCluster is larger than the node; the message is one line."""


def check_fits(stack_config: Mapping[str, Any], stack: str, allocatable: Mapping[str, str]) -> str:
    """Raise DoesNotFit when the head and the minimum workers ask the scheduler for more than
    the node has (a worker would stay Pending; with a failing head the Pending worker can take
    the CPU a new head needs). Returns the one-line summary otherwise."""
    from components.kuberay.sizing import container_requests
    from infra.clouds import load_settings
    from infra.sizing import minimum_requests

    config = json.loads(json.dumps(dict(stack_config)))  # a deep copy
    # Secrets are set on the engine's stack (configure), not in the file: their values change
    # nothing that is asked for, but the settings want them present.
    config.setdefault(JUPYTER_TOKEN_KEY, "x" * 32)
    store = (config.get(LOCAL_KEY) or {}).get("objectStore")
    if isinstance(store, dict):
        store.setdefault("secretAccessKey", "x" * 32)
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    settings = load_settings(raw, project="ray-platform", stack=stack)
    wanted = minimum_requests(settings)
    node = container_requests({"resources": {"requests": dict(allocatable)}})
    if not wanted.total.fits(node):
        raise DoesNotFit(
            f"the {stack} stack's RayCluster asks for {wanted.summary()}, more than the node "
            f"can hold ({node}): lower ray.head / ray.workerGroups[].cpu, memory or minReplicas "
            f"in Pulumi.{stack}.yaml"
        )
    return wanted.summary()


def node_allocatable(kubeconfig: Path) -> dict[str, str]:
    """The first node's allocatable CPU and memory."""
    nodes = Kube(kubeconfig).items("/api/v1/nodes")
    allocatable = (nodes[0].get("status") or {}).get("allocatable") or {} if nodes else {}
    return {k: str(allocatable[k]) for k in ("cpu", "memory") if k in allocatable}


def ensure_ray_image(stack_config: Mapping[str, Any], registry: str) -> str | None:
    """Build (or reuse) the stand-in for the stack's Ray image and push it to the node's
    registry under the stack file's image name, which containerd resolves there. Returns
    `<registry>/rayproject/ray:<tag>@<digest>` as pushed, or None when the stack names another
    image.
    A prod stack always gets the stand-in of its ray.version: it is the base its application
    image is built on (`prod_image_overrides`)."""
    from tools import image

    ray = stack_config.get(RAY_KEY) or {}
    version, name = str(ray.get("version", "")), str(ray.get("image", ""))
    expected = f"{image.RAY_REPO}:{image.tag_for(version)}"
    if name not in (expected, f"docker.io/{expected}") and not is_prod(stack_config):
        _say(f"ray.image is {name}: not built here (only {expected} has a local stand-in)")
        return None
    built = image.ensure_ray(version)
    digest = image.push(built, registry)
    # Named by the registry's own address: the host's skopeo (`ray-platform image build`) has no
    # docker.io mirror, only containerd does, so `rayproject/ray@…` would go to Docker Hub.
    return f"{registry}/{expected}@{digest}"


def check_image_argument(stack_config: Mapping[str, Any], stack: str, image: str | None) -> None:
    """`--image` for a prod stack must be pinned by digest: said before anything is built."""
    if image is not None and is_prod(stack_config) and "@sha256:" not in image:
        raise BadArgument(
            f"--image {image}: stack {stack} is prod, its image must be pinned by digest "
            "(name:tag@sha256:…, as `ray-platform image build` prints it)"
        )


def other_stack_deployed(kubeconfig: Path, stack: str) -> str | None:
    """Another stack of this project whose RayCluster runs on the cluster (its
    `ray-platform/stack` label): `local` and `local-prod` share the namespace, the RayCluster's
    name and the KubeRay CRDs, and the provider would adopt the other's objects silently."""
    try:
        clusters = Kube(kubeconfig).items("/apis/ray.io/v1/rayclusters")
    except Exception:  # no CRD yet, or no cluster: nothing deployed to clash with
        return None
    for rc in clusters:
        owner = ((rc.get("metadata") or {}).get("labels") or {}).get(STACK_LABEL)
        if owner and owner != stack:
            return str(owner)
    return None


APP_IMAGE_FILE = "app-image-{stack}.txt"
"""In the state directory: the last `--image` a prod stack was deployed with on this node."""


def app_image(state: Path, stack: str, given: str | None, registry: str) -> str | None:
    """`--image`, remembered for the next run; without it, the one remembered — unless it named
    another registry (a node since taken down: the image went with it)."""
    record = state / APP_IMAGE_FILE.format(stack=stack)
    if given is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(given + "\n")
        return given
    try:
        remembered = record.read_text().strip()
    except OSError:
        return None
    if remembered.startswith(registry + "/"):
        _say(f"{stack}: running {remembered}, deployed last with --image")
        return remembered
    _say(f"{stack}: {remembered} was in a registry this node no longer has: build it again")
    return None


def prod_image_overrides(
    stack_config: Mapping[str, Any], base: str, registry: str, app_image: str | None
) -> dict[str, Any]:
    """A prod stack on the node: its base image is the stand-in by the digest it was pushed
    with, its registry the node's, and it runs `app_image` (`tools/up --image`, what
    `ray-platform image build` printed) — or, before there is one, the base itself, so a first
    `up` exports what the build reads."""
    ray = dict(stack_config.get(RAY_KEY) or {})
    ray["baseImage"] = base
    ray["image"] = app_image or base
    local = dict(stack_config.get(LOCAL_KEY) or {})
    local["imageRepository"] = f"{registry}/{APP_REPOSITORY}"
    return {RAY_KEY: ray, LOCAL_KEY: local}


# ---------------------------------------------------------------------------------- bucket config


def bucket_overrides(
    stack_config: Mapping[str, Any], store: localcluster.ObjectStore
) -> dict[str, Any]:
    """Top-level stack-file keys that turn the artifact bucket on with `store`, the rest of each
    block kept as written. The secret key is not among them: see `bucket_secrets`."""
    storage = dict(stack_config.get(STORAGE_KEY) or {})
    storage["artifactBucket"] = {**(storage.get("artifactBucket") or {}), "enabled": True}
    local = dict(stack_config.get(LOCAL_KEY) or {})
    local["objectStore"] = {
        **(local.get("objectStore") or {}),
        "endpoint": store.endpoint,
        "bucket": store.bucket,
        "accessKeyId": store.access_key,
    }
    local["objectStore"].pop("secretAccessKey", None)
    return {STORAGE_KEY: storage, LOCAL_KEY: local}


def bucket_secrets(store: localcluster.ObjectStore) -> dict[str, auto.ConfigValue]:
    """Config set with `path=True` as Pulumi secrets (encrypted in the work dir's stack file)."""
    return {SECRET_KEY_PATH: auto.ConfigValue(store.secret_key, secret=True)}


def configure(stack: auto.Stack, store: localcluster.ObjectStore | None) -> None:
    """Set the secret part of the bucket config (JupyterLab's token: engine.local_stack)."""
    if store is None:
        return
    for key, value in bucket_secrets(store).items():
        stack.set_config(key, value, path=True)


# ------------------------------------------------------------------------------ cluster identity


def cluster_identity(kubeconfig: Path | None) -> str | None:
    """UID of the cluster's kube-system namespace, or None when it cannot be read."""
    if kubeconfig is None:
        return None
    # Any failure (unreachable, exec-plugin credentials Kube cannot use) means "unknown", which
    # the caller treats as "refresh to be sure".
    try:
        found = Kube(kubeconfig).get("/api/v1/namespaces/kube-system")
    except Exception:
        return None
    uid = (found or {}).get("metadata", {}).get("uid")
    return str(uid) if uid else None


def recorded_identity(state: Path, stack: str) -> str | None:
    """The cluster identity recorded for `stack` by its last deploy, if any."""
    try:
        recorded = json.loads((state / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None
    value = recorded.get(stack) if isinstance(recorded, dict) else None
    return str(value) if value else None


def record_identity(state: Path, stack: str, identity: str | None) -> None:
    """Record (or, with None, forget) the cluster `stack` is deployed to."""
    path = state / IDENTITY_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    if identity is None:
        recorded.pop(stack, None)
    else:
        recorded[stack] = identity
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def deployed_resources(deployment: Mapping[str, Any] | None) -> int:
    """How many resources of an exported deployment are real objects (not the stack or a
    provider)."""
    resources = (deployment or {}).get("resources") or []
    return sum(1 for r in resources if not str(r.get("type", "")).startswith(_BOOKKEEPING_TYPES))


def needs_refresh(recorded: str | None, current: str | None, deployed: int) -> bool:
    """Whether the state must be refreshed before it is trusted against the current cluster.

    An empty state has nothing to be stale about. Otherwise trust it only when the cluster it was
    deployed to is, provably, the one answering now.
    """
    if deployed == 0:
        return False
    return recorded is None or current is None or recorded != current


# -------------------------------------------------------------------------------------- the job


def _reason(err: auto.CommandError) -> str:
    """The engine's error in one line: the first "N errors occurred:" header that has its `* …`
    items under it (the Diagnostics block; the progress rows above it repeat the header cut to
    its first line), else the first error line."""
    lines = str(err).splitlines()
    first = None
    for i, line in enumerate(lines):
        if "error:" not in line or "an unhandled error occurred" in line:
            continue
        reason = line.split("error:", 1)[1].strip()
        if not reason.endswith("occurred:"):
            return reason
        items: list[str] = []
        for item in lines[i + 1 :]:
            if not item.strip() and not items:
                continue  # the engine's display may put a blank line under the header
            if not item.strip().startswith("*"):
                break
            items.append(item.strip().lstrip("* ").strip())
        if items:
            return f"{reason} {'; '.join(items)}"
        first = first or reason
    return first or "see the engine output above"


def engine_failure(step: str, err: auto.CommandError) -> list[str]:
    """What a failed engine command prints: the one error line, and a hint where the cause is
    one this project knows."""
    lines = [f"error: pulumi {step} failed: {_reason(err)}"]
    text = str(err)
    if "invalid ownership metadata" in text and ".ray.io" in text:
        # A state from before the CRDs became a Helm release: Helm adopts nothing unlabelled.
        lines.append(
            "hint: the KubeRay CRDs were applied by an earlier version of this program; hand "
            "them over to the kuberay-crds release once (README: 'A stack deployed before the "
            "CRDs became a Helm release')"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.devcluster.stack", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "action",
        nargs="?",
        default="up",
        choices=["up", "preview", "destroy", "outputs", "down", "env"],
        help="env: print the exports that make the printed kubectl commands work here",
    )
    parser.add_argument(
        "--control-plane-only",
        action="store_true",
        help="no node (no root needed): the API server, controllers and operator only; "
        "pods stay Pending",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=READY_TIMEOUT,
        help=f"seconds `up` waits for the RayCluster to be ready (default {READY_TIMEOUT:.0f})",
    )
    parser.add_argument(
        "--stack",
        default="local",
        choices=LOCAL_STACKS,
        help="local (dev, the default) or local-prod (mode prod: the production path)",
    )
    parser.add_argument(
        "--image",
        help="the stack's ray.image for this run (local-prod: the reference `ray-platform "
        "image build` printed, pinned by digest)",
    )
    parser.add_argument("--state", type=Path, default=None, help="file backend directory")
    parser.add_argument(
        "--cluster-dir",
        type=Path,
        default=None,
        help="state directory of the local control plane "
        f"(default: {localcluster.default_state_dir()})",
    )
    args = parser.parse_args(argv)
    state: Path = args.state or cache_root() / "state"
    if args.action in ("outputs", "env"):  # read only: beside a running job is fine
        return _run(args, state)
    try:
        with recovery.one_run(state, args.action):
            return _run(args, state)
    except recovery.Busy as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, state: Path) -> int:
    try:
        if args.action == "down":
            localcluster.down(args.cluster_dir)
            return 0
        if args.action == "env":
            print(env_exports(localcluster.kubeconfig(args.cluster_dir)))
            return 0
        stack_config = engine.stack_file_config(args.stack)
        if args.action in ("up", "preview"):  # before anything starts or is built
            check_image_argument(stack_config, args.stack, args.image)
        target = _target(
            args.action in ("up", "preview"),
            args.cluster_dir,
            with_node=not args.control_plane_only,
        )
        kubeconfig = target.kubeconfig
        if args.action in ("up", "preview"):
            if is_prod(stack_config) and target.node is None and not args.image:
                print(
                    f"error: {args.stack} runs images from the project's node registry: without "
                    "a node (--control-plane-only, or your own KUBECONFIG) give --image "
                    "<an image pinned by digest>",
                    file=sys.stderr,
                )
                return 1
            if kubeconfig is not None:
                other = other_stack_deployed(kubeconfig, args.stack)
                if other is not None:
                    print(
                        f"error: stack {other} is deployed on this cluster (same namespace, "
                        f"RayCluster and CRDs as {args.stack}): run `tools/up destroy --stack "
                        f"{other}` first",
                        file=sys.stderr,
                    )
                    return 1
        eng = engine.engine(state, kubeconfig)
        overrides: dict[str, Any] = {}
        if target.object_store is not None:
            overrides.update(bucket_overrides(stack_config, target.object_store))
        if target.node is not None:
            shared = localcluster.shared_dir(args.cluster_dir)
            # On top of the bucket's overrides: both change ray-platform:local.
            merged = {**stack_config, **overrides}
            port = api_server_port(kubeconfig) if kubeconfig is not None else None
            overrides.update(node_overrides(merged, target.node.package_index, shared, port))
            if args.action in ("up", "preview") and target.node.registry:
                merged = {**stack_config, **overrides}
                if kubeconfig is not None:
                    fits = check_fits(merged, args.stack, node_allocatable(kubeconfig))
                    _say(f"the RayCluster fits the node: {fits}")
                base = ensure_ray_image(stack_config, target.node.registry)
                if base is not None and is_prod(merged):
                    merged = {**stack_config, **overrides}
                    image = app_image(state, args.stack, args.image, target.node.registry)
                    overrides.update(
                        prod_image_overrides(merged, base, target.node.registry, image)
                    )
                    _say(f"prod: base {base}; running {image or 'the base (no --image yet)'}")
        if args.image:  # the settings check it like the stack file's (prod: by digest)
            ray = dict({**stack_config, **overrides}.get(RAY_KEY) or {})
            ray["image"] = args.image
            overrides[RAY_KEY] = ray
    except (BuildError, localcluster.LocalClusterError, DoesNotFit, BadArgument) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except _settings_error() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except _image_error() as err:
        print(f"error: the local Ray image: {err}", file=sys.stderr)
        return 1
    stack = engine.local_stack(eng, engine.work_dir(state, args.stack, overrides), args.stack)
    out: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    step = "config"
    outputs: dict[str, Any] | None = None  # what an up read already (None: read them here)
    try:
        configure(stack, target.object_store)
        step = args.action
        if args.action in ("up", "preview", "destroy"):  # under the run lock (main)
            for torn in recovery.torn_sidecars(state):
                torn.unlink()
                _say(f"removed {torn.name}, torn by a killed run (read as no attributes then)")
            step = "cancel"
            if not release_stale_locks(stack, state, args.stack):
                return 1
            step = args.action
            current = cluster_identity(kubeconfig)
            recorded = recorded_identity(state, args.stack)
            deployment = stack.export_stack().deployment
            refresh = needs_refresh(recorded, current, deployed_resources(deployment))
            earlier = crd_guard.earlier_crds((deployment or {}).get("resources") or [])
            # On a control plane known to be another one, the refresh drops them (they are not
            # there): nothing to hand over.
            elsewhere = deployed_elsewhere(recorded, current)
            if earlier and args.action == "up" and not elsewhere:
                print(
                    f"error: stack {args.stack} lists the KubeRay CRDs as an earlier version of "
                    f"this program applied them ({', '.join(earlier)}); this version installs "
                    "them as a Helm release, and an up now would fail at its install, or with "
                    "the engine told to go on, delete them and every Ray object in the cluster. "
                    f"Hand them over once ({crd_guard.HAND_OVER}), or start a new control "
                    "plane (tools/up down, then tools/up)",
                    file=sys.stderr,
                )
                return 1
            pending = recovery.pending_operations(deployment or {})
            if pending and args.action != "preview":
                _say(
                    f"the last run was killed with {len(pending)} operation(s) in flight "
                    f"({'; '.join(pending[:3])}{'; …' if len(pending) > 3 else ''}): "
                    "removing what its unfinished creates made, then reading the cluster back "
                    "into the state (pulumi refresh --clear-pending-creates)"
                )
                step = "cleanup"
                unfinished = recovery.unfinished_creates(deployment or {})
                releases = recovery.interrupted_releases(deployment or {})
                if (unfinished or releases) and kubeconfig is not None:
                    delete_unfinished(kubeconfig, unfinished, releases)
                step = "refresh"
                with recovery.engine_owns_ctrl_c():
                    stack.refresh(on_output=out, color="never", clear_pending_creates=True)
                refresh = False
            if refresh:
                if recorded is not None and current is not None:
                    why = f"kube-system uid {recorded}, now {current}"
                    _say(f"the state was deployed to another cluster ({why}); refreshing it first")
                else:
                    _say("cannot tell which cluster the state was deployed to; refreshing it first")
            if args.action == "preview":
                with recovery.engine_owns_ctrl_c():
                    stack.preview(on_output=out, color="never", refresh=refresh)
            else:
                # up and destroy: the state first read back from the cluster when it may be stale
                # (see needs_refresh), then the operation; the engine owns Ctrl-C throughout.
                operation = stack.up if args.action == "up" else stack.destroy
                if kubeconfig is not None and sweeps_volumes(target, recorded, current):
                    # The state read above: a refresh of pending creates changes no resource
                    # list, and one more export would cost every up a CLI run.
                    step = "cleanup"
                    delete_orphaned_volumes(kubeconfig, deployment or {}, args.stack)
                with recovery.engine_owns_ctrl_c():
                    if refresh:
                        step = "refresh"
                        stack.refresh(on_output=out, color="never")
                    step = args.action
                    result = operation(on_output=out, color="never")
                record_identity(state, args.stack, current if args.action == "up" else None)
                if args.action == "destroy":
                    return 0
                # The Automation API read the outputs after the up (two CLI runs): reused, not
                # read again for the readiness wait and the print (bench/README.md, issue 18).
                assert isinstance(result, auto.UpResult)  # destroy returned above
                outputs = engine.plain_outputs(result.outputs)
                if target.node is not None and kubeconfig is not None:
                    step = "readiness"
                    _wait_ready(outputs, kubeconfig, args.stack, args.timeout)
    except recovery.Interrupted:
        print(
            f"error: interrupted: pulumi {step} stopped after the operations in flight; "
            "run the same command again to finish",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:  # outside the engine (e.g. waiting for readiness): nothing torn
        print(f"error: interrupted during {step}", file=sys.stderr)
        return 130
    except localcluster.LocalClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except auto.CommandError as err:  # the engine already printed its diagnostics above
        print("\n".join(engine_failure(step, err)), file=sys.stderr)
        return 1
    except readiness.NotReady as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as err:  # e.g. the engine could not be started at all
        print(f"error: pulumi {step} could not run: {err}", file=sys.stderr)
        return 1
    if outputs is None:
        outputs = engine.outputs(stack)
    print(json.dumps(outputs, indent=2, sort_keys=True))
    if target.node is not None and kubeconfig is not None:
        _say("the kubectl commands above work with the project's kubectl; first run:")
        _say('  eval "$(tools/up env)"')
    return 0


def delete_unfinished(
    kubeconfig: Path,
    unfinished: list[recovery.UnfinishedCreate],
    releases: Sequence[recovery.InterruptedRelease] = (),
) -> None:
    """Delete (and wait for) the objects a killed run's unfinished creates may have made, and
    the pending records of the Helm releases it was installing or upgrading."""
    import subprocess

    from tools.build import ensure

    kubectl = [str(ensure(["kubectl"])["kubectl"]), f"--kubeconfig={kubeconfig}"]

    def run(*args: str, what: str) -> str:
        done = subprocess.run([*kubectl, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise localcluster.LocalClusterError(
                f"cannot {what} left by the killed run: " + " ".join(done.stderr.split())[:200]
            )
        return done.stdout

    for release in releases:
        deleted = run(
            "delete",
            "secret",
            "-n",
            release.namespace,
            "-l",
            release.stale_records,
            "--ignore-not-found",
            what=f"delete the records of Helm release {release.namespace}/{release.name}",
        )
        if deleted.strip():
            what = "install" if release.installing else "upgrade"
            _say(
                f"deleted Helm release {release.namespace}/{release.name}'s records of the "
                f"{what} that never finished"
            )
    for obj in unfinished:
        where = ["-n", obj.namespace] if obj.namespace else []
        volume = obj.volume
        if obj.kubectl_resource == "persistentvolumeclaim" and volume is None:
            found = run(
                "get", "pvc", obj.name, *where, "-o", "json", "--ignore-not-found",
                what=f"read {obj.describe()}",
            )  # fmt: skip
            volume = ((json.loads(found) if found.strip() else {}).get("spec") or {}).get(
                "volumeName"
            )
        deleted = run(
            "delete", obj.kubectl_resource, obj.name, *where,
            "--ignore-not-found", "--wait=true", "--timeout=180s",
            what=f"delete {obj.describe()}",
        )  # fmt: skip
        if deleted.strip():
            _say(f"deleted {obj.describe()} (its create never finished)")
        if volume and obj.namespace:  # a claim: its retained volume must be bindable again
            _reopen_volume(run, volume, obj.namespace, obj.name)


def sweeps_volumes(target: Target, recorded: str | None, current: str | None) -> bool:
    """Whether an up or destroy looks for volumes an interrupted run left unrecorded: only on
    the project's own cluster (never on a $KUBECONFIG someone else runs), and not when the state
    is known to belong to another cluster (its list of volumes says nothing about this one)."""
    return target.own and not deployed_elsewhere(recorded, current)


def deployed_elsewhere(recorded: str | None, current: str | None) -> bool:
    """The state was deployed to a cluster known to be another one (kube-system uids differ)."""
    return recorded is not None and current is not None and recorded != current


def delete_orphaned_volumes(kubeconfig: Path, deployment: Mapping[str, Any], stack: str) -> None:
    """Delete the volumes an interrupted run of `stack` made but never recorded
    (recovery.orphaned_volumes), each only as it was read (a claim binding it meanwhile keeps
    it). Best effort: a cluster that will not list or delete them is said and left alone."""
    selector = ",".join(f"{k}={v}" for k, v in recovery.volume_labels(stack).items())
    query = urllib.parse.urlencode({"labelSelector": selector})
    try:
        kube = Kube(kubeconfig)
        volumes = kube.items(f"/api/v1/persistentvolumes?{query}")
    except Exception as err:  # the cleanup is an extra: the up itself still runs
        _say(f"could not list this stack's PersistentVolumes to clean up ({err}); going on")
        return
    for pv in recovery.orphaned_volumes(volumes, deployment, stack):
        meta = pv["metadata"]
        name = str(meta["name"])
        obj = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}}
        try:
            kube.delete(obj, {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]})
        except Exception as err:
            _say(f"left PersistentVolume {name} ({err})")
            continue
        _say(
            f"deleted PersistentVolume {name} (an interrupted run made it, the state never knew it)"
        )


def _reopen_volume(run: Callable[..., str], volume: str, namespace: str, claim: str) -> None:
    found = run(
        "get", "pv", volume, "-o", "json", "--ignore-not-found",
        what=f"read PersistentVolume {volume}",
    )  # fmt: skip
    patch = recovery.reopen_retained_volume(json.loads(found), namespace, claim) if found else None
    if not patch:
        return
    try:
        run(
            "patch", "pv", volume, "--type=json", f"-p={json.dumps(patch)}",
            what=f"reopen PersistentVolume {volume}",
        )  # fmt: skip
    except localcluster.LocalClusterError as err:  # re-bound in between: the test op refused
        _say(f"PersistentVolume {volume} left as it is ({err})")
        return
    _say(f"PersistentVolume {volume} is bindable again by {namespace}/{claim} (data kept)")


def release_stale_locks(stack: auto.Stack, state: Path, stack_name: str) -> bool:
    """Cancel the engine locks of killed `pulumi` runs (`pulumi cancel`, the supported way),
    saying so; False (after one line) when a live run holds the stack."""
    locks = recovery.engine_locks(state, stack_name)
    live = [lock for lock in locks if not recovery.is_stale(lock)]
    if live:
        print(
            f"error: stack {stack_name} is locked by a running pulumi ({live[0].describe()}): "
            f"wait for it; if that process is gone, remove {live[0].path}",
            file=sys.stderr,
        )
        return False
    if locks:
        _say(
            f"a pulumi run on stack {stack_name} was killed ({locks[0].describe()}); "
            "releasing its lock (pulumi cancel)"
        )
        stack.cancel()
    return True


def _settings_error() -> type[Exception]:
    from infra.settings.errors import SettingsError

    return SettingsError


def _image_error() -> type[Exception]:
    from tools import image

    return image.ImageError


def min_workers(stack_config: Mapping[str, Any]) -> dict[str, int]:
    """Worker group name → minReplicas, as the stack file says (defaults: 0)."""
    groups = (stack_config.get(RAY_KEY) or {}).get("workerGroups") or []
    return {str(g["name"]): int(g.get("minReplicas", 0)) for g in groups if "name" in g}


def _wait_ready(
    outputs: Mapping[str, Any], kubeconfig: Path, stack_name: str, timeout: float
) -> None:
    namespace, cluster = str(outputs["namespace"]), str(outputs["rayClusterName"])
    _say(f"waiting for RayCluster {namespace}/{cluster} to be ready (up to {timeout:.0f}s)")
    took = readiness.wait(
        kubeconfig,
        namespace,
        cluster,
        min_workers(engine.stack_file_config(stack_name)),
        timeout=timeout,
        say=_say,
    )
    _say(f"RayCluster {namespace}/{cluster} ready ({took:.0f}s)")


def env_exports(kubeconfig: Path) -> str:
    """Shell exports: the project's kubectl first on PATH, the local cluster's kubeconfig."""
    import shlex

    bin_dir = Path(__file__).resolve().parents[1] / "bin"  # tools/bin, beside tools/up
    return (
        f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"\n'
        f"export KUBECONFIG={shlex.quote(str(kubeconfig))}"
    )


if __name__ == "__main__":
    sys.exit(main())
