"""RayCluster pod templates: images, memory, privileges, identity, exposure, prod dependencies.

Every rule walks the head template and every worker group's template; KubeRay treats the first
container of a template as the Ray container.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policy.common import (
    PROD,
    CannotCheck,
    as_list,
    env_entries,
    env_value,
    mode,
    of_type,
    path,
    resource_rule,
    stack_rule,
)

RAYCLUSTER = "kubernetes:ray.io/v1:RayCluster"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
EXPOSED = ("LoadBalancer", "NodePort")
BUCKET_ENV = "RAY_PLATFORM_BUCKET_URI"
MODE_ENV = "RAY_PLATFORM_MODE"
INSTALLERS = ("pip", "conda", "uv")
_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)")

Template = tuple[str, Mapping[str, Any]]


def templates(spec: Mapping[str, Any]) -> Iterator[Template]:
    """(where, pod spec) for the head and every worker group."""
    head = path(spec, "headGroupSpec", "template", "spec")
    if isinstance(head, Mapping):
        yield "head", head
    for i, group in enumerate(as_list(spec.get("workerGroupSpecs"))):
        pod = path(group, "template", "spec")
        if isinstance(pod, Mapping):
            yield f"worker group {group.get('groupName', i)}", pod


def containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers"):
        for c in as_list(pod.get(key)):
            if isinstance(c, Mapping):
                yield c


def _spec(args: ResourceValidationArgs) -> Mapping[str, Any]:
    spec = args.props.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _image_parts(image: str) -> tuple[str | None, str | None]:
    """(tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return tag, digest or None


def _head(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    head = path(spec, "headGroupSpec", "template", "spec")
    first = as_list(head.get("containers")) if isinstance(head, Mapping) else []
    return first[0] if first and isinstance(first[0], Mapping) else None


def cluster_mode(
    args: ResourceValidationArgs | StackValidationArgs, spec: Mapping[str, Any]
) -> str:
    """prod when the pack's config says so or the cluster itself says RAY_PLATFORM_MODE=prod."""
    head = _head(spec)
    own = env_value(head, MODE_ENV) if head is not None else None
    return PROD if PROD in (mode(args), own) else str(own or mode(args))


def _tag_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in templates(_spec(args)):
        for c in containers(pod):
            image = str(c.get("image") or "")
            tag, digest = _image_parts(image)
            if not image:
                report(f"{where} container {c.get('name')} names no image", None)
            elif tag is None and digest is None:
                report(f"{where} container {c.get('name')} image {image} has no tag", None)
            elif tag == "latest":
                report(f"{where} container {c.get('name')} uses the mutable tag :latest", None)


def _prod_digest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = _spec(args)
    if cluster_mode(args, spec) != PROD:
        return
    for where, pod in templates(spec):
        for c in containers(pod):
            _, digest = _image_parts(str(c.get("image") or ""))
            if not (digest or "").startswith("sha256:"):
                report(f"{where} container {c.get('name')} image is not pinned by @sha256:", None)


def _ray_version(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = _spec(args)
    want = spec.get("rayVersion")
    if not want:
        report("spec.rayVersion is not set", None)
        return
    for where, pod in templates(spec):
        first = as_list(pod.get("containers"))[:1]
        for c in first:
            tag, _ = _image_parts(str(c.get("image") or ""))
            m = _VERSION.match(tag or "")
            if m is None:
                report(f"{where} Ray image tag {tag!r} carries no Ray version", None)
            elif m.group(1) != str(want):
                report(f"{where} Ray image is Ray {m.group(1)} but rayVersion is {want}", None)


def _memory(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in templates(_spec(args)):
        for i, c in enumerate(as_list(pod.get("containers"))):
            req = path(c, "resources", "requests", "memory")
            lim = path(c, "resources", "limits", "memory")
            if i == 0 and (req is None or lim is None):
                report(f"{where} Ray container sets no memory request and limit", None)
            elif req != lim:
                report(
                    f"{where} container {c.get('name')} memory request {req} != limit {lim}", None
                )


def _privileged(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in templates(_spec(args)):
        for c in containers(pod):
            sc = c.get("securityContext") or {}
            if sc.get("privileged") is True:
                report(f"{where} container {c.get('name')} is privileged", None)
            if sc.get("allowPrivilegeEscalation") is True:
                report(f"{where} container {c.get('name')} allows privilege escalation", None)


def _host_namespaces(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in templates(_spec(args)):
        on = [k for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k) is True]
        if on:
            report(f"{where} pod uses {', '.join(on)}", None)


def _host_path(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in templates(_spec(args)):
        for v in as_list(pod.get("volumes")):
            if isinstance(v, Mapping) and v.get("hostPath") is not None:
                report(f"{where} pod mounts hostPath volume {v.get('name')}", None)


def _restricted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in templates(_spec(args)):
        psc = pod.get("securityContext") or {}
        for c in containers(pod):
            sc = c.get("securityContext") or {}
            name = c.get("name")
            faults = []
            if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                faults.append("runAsNonRoot")
            if sc.get("allowPrivilegeEscalation") is not False:
                faults.append("allowPrivilegeEscalation: false")
            if "ALL" not in [str(x) for x in as_list(path(sc, "capabilities", "drop"))]:
                faults.append("capabilities.drop [ALL]")
            seccomp = path(sc, "seccompProfile", "type") or path(psc, "seccompProfile", "type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                faults.append("seccompProfile RuntimeDefault")
            if faults:
                report(f"{where} container {name} lacks {', '.join(faults)}", None)


def _uses_bucket(pod: Mapping[str, Any]) -> bool:
    return any(e.get("name") == BUCKET_ENV for c in containers(pod) for e in env_entries(c))


def _sa_for_bucket(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in templates(_spec(args)):
        sa = pod.get("serviceAccountName")
        if _uses_bucket(pod) and sa in (None, "", "default"):
            report(f"{where} uses the bucket but runs as no dedicated ServiceAccount", None)


def _workers_own_sa(args: ResourceValidationArgs, report: ReportViolation) -> None:
    found = list(templates(_spec(args)))
    head = next((pod.get("serviceAccountName") for w, pod in found if w == "head"), None)
    if not head:
        return
    for where, pod in found:
        if where != "head" and pod.get("serviceAccountName") == head:
            report(f"{where} shares the head's ServiceAccount {head}", None)


def _dashboard(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == RAYCLUSTER:
        kind = path(_spec(args), "headGroupSpec", "serviceType")
        if kind in EXPOSED:
            report(f"headGroupSpec.serviceType is {kind}: the dashboard leaves the cluster", None)
        return
    selector = path(args.props, "spec", "selector") or {}
    kind = path(args.props, "spec", "type")
    if kind in EXPOSED and "ray.io/cluster" in selector:
        report(f"Service of type {kind} selects Ray pods", None)


def _runtime_env_installs(args: StackValidationArgs, report: ReportViolation) -> None:
    maps = of_type(args.resources, CONFIG_MAP)
    for rc in of_type(args.resources, RAYCLUSTER):
        spec = rc.props.get("spec") or {}
        if cluster_mode(args, spec) != PROD:
            continue
        name = path(rc.props, "metadata", "name")
        cm = _config_map(maps, f"{name}-runtime-env")
        if cm is None:
            raise CannotCheck(f"no {name}-runtime-env ConfigMap holds {name}'s runtime_env")
        text = path(cm.props, "data", "runtime_env.json")
        try:
            env = json.loads(text) if text else {}
        except ValueError as e:
            raise CannotCheck(f"{cm.name} runtime_env.json is not JSON: {e}") from e
        used = [k for k in INSTALLERS if isinstance(env, Mapping) and env.get(k)]
        if used:
            report(f"prod runtime_env of {name} installs packages with {', '.join(used)}", cm.urn)


def _config_map(maps: list[PolicyResource], name: str) -> PolicyResource | None:
    return next((m for m in maps if path(m.props, "metadata", "name") == name), None)


def _jupyter(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    pod = path(spec, "headGroupSpec", "template", "spec")
    if not isinstance(pod, Mapping):
        return []
    return [c for c in containers(pod) if c.get("name") == "jupyter"]


def _jupyter_not_prod(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = _spec(args)
    if _jupyter(spec) and cluster_mode(args, spec) == PROD:
        report("a jupyter container runs on a prod head", None)


def _jupyter_token(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The token comes from a Secret: a mounted secret volume (JUPYTER_TOKEN_FILE under its
    mount) or an env var from a secretKeyRef; never a literal, never none."""
    spec = _spec(args)
    head = path(spec, "headGroupSpec", "template", "spec") or {}
    secret_volumes = {
        v.get("name") for v in head.get("volumes") or [] if isinstance(v, Mapping) and "secret" in v
    }
    for c in _jupyter(spec):
        env = {e.get("name"): e for e in env_entries(c)}
        literal = env.get("JUPYTER_TOKEN")
        if literal is not None and "value" in literal:
            report("the jupyter container has a literal JUPYTER_TOKEN", None)
            continue
        from_env = literal is not None and path(literal, "valueFrom", "secretKeyRef", "name")
        token_file = str((env.get("JUPYTER_TOKEN_FILE") or {}).get("value") or "")
        from_file = bool(token_file) and any(
            m.get("name") in secret_volumes and token_file.startswith(str(m.get("mountPath")) + "/")
            for m in c.get("volumeMounts") or []
            if isinstance(m, Mapping)
        )
        if not (from_env or from_file):
            report("the jupyter container takes its token from no Secret", None)


def _rule(rule_id: str, desc: str, fix: str, check: Any, **kw: Any) -> Policy:
    return resource_rule(rule_id, desc, fix, check, types=kw.pop("types", [RAYCLUSTER]), **kw)


POLICIES: list[Policy] = [
    _rule(
        "ray-image-tag-pinned",
        "Every RayCluster container image has a tag, and it is not latest.",
        "Use rayproject/ray:<rayVersion>-py311 or your image's versioned tag.",
        _tag_pinned,
    ),
    _rule(
        "ray-prod-image-digest",
        "Prod RayCluster images are pinned by @sha256 digest.",
        "Set ray.image to REGISTRY/IMAGE:TAG@sha256:DIGEST in the prod stack file.",
        _prod_digest,
        moded=True,
    ),
    _rule(
        "ray-image-matches-ray-version",
        "The Ray image's tag carries the Ray version that spec.rayVersion names.",
        "Make ray.version and the image tag's leading version the same.",
        _ray_version,
    ),
    _rule(
        "ray-memory-request-equals-limit",
        "Ray containers set memory request equal to limit.",
        "Give each group one memory value, used for both request and limit.",
        _memory,
    ),
    _rule(
        "ray-no-privileged",
        "No RayCluster container is privileged or allows privilege escalation.",
        "Remove privileged and set allowPrivilegeEscalation: false.",
        _privileged,
    ),
    _rule(
        "ray-no-host-namespaces",
        "Ray pods use no host network, PID or IPC namespace.",
        "Remove hostNetwork/hostPID/hostIPC from the pod template.",
        _host_namespaces,
    ),
    _rule(
        "ray-no-host-path",
        "Ray pods mount no hostPath volume.",
        "Use a PersistentVolumeClaim (EFS, Filestore) instead of hostPath.",
        _host_path,
    ),
    _rule(
        "ray-restricted-security-context",
        "Ray containers meet Pod Security 'restricted' (non-root, no escalation, drop ALL, "
        "RuntimeDefault seccomp).",
        "Set runAsNonRoot, allowPrivilegeEscalation: false, capabilities.drop [ALL] and "
        "seccompProfile.type RuntimeDefault on every container (or the pod).",
        _restricted,
    ),
    _rule(
        "ray-service-account-for-bucket",
        "Ray pods that use the bucket run as a dedicated ServiceAccount.",
        "Set serviceAccountName on every template that has RAY_PLATFORM_BUCKET_URI.",
        _sa_for_bucket,
    ),
    _rule(
        "ray-workers-own-service-account",
        "Worker groups do not run as the head's ServiceAccount.",
        "Give workers their own ServiceAccount (the head's carries the autoscaler's Role).",
        _workers_own_sa,
    ),
    _rule(
        "ray-dashboard-not-exposed",
        "The Ray dashboard is never on a LoadBalancer or NodePort Service.",
        "Keep headGroupSpec.serviceType ClusterIP and use kubectl port-forward.",
        _dashboard,
        types=[RAYCLUSTER, SERVICE],
    ),
    stack_rule(
        "ray-prod-runtime-env-no-installs",
        "Prod runtime_env installs no packages (no pip, conda or uv).",
        "Bake dependencies into the prod image; keep only env_vars/working_dir in runtime_env.",
        _runtime_env_installs,
        moded=True,
    ),
    _rule(
        "ray-jupyter-not-in-prod",
        "No Jupyter container runs on a prod head.",
        "Drop the jupyter container from prod; use Job Submission against the baked image.",
        _jupyter_not_prod,
        moded=True,
    ),
    _rule(
        "ray-jupyter-token",
        "Jupyter on the head requires a token from a Secret.",
        "Mount the token Secret into the jupyter container and point JUPYTER_TOKEN_FILE at it "
        "(components/kuberay/jupyter.py does).",
        _jupyter_token,
    ),
]
