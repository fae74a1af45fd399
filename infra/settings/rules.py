"""Rules that span keys, one small named function each.

A rule takes the validated settings (and the project directory, for local paths) and returns its
problems as one-line messages naming the full key and value. `RULES` is the list `load` runs; a
cloud's own cross-field rules live on its block (`CloudSettings.rules`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from infra.settings import ray_start
from infra.settings.errors import CONFIG_PREFIX, message
from infra.settings.models import GroupSettings, Settings
from infra.settings.values import (
    DIGEST,
    image_ray_version,
    is_requirement,
    requirement_name,
    semver_tuple,
)

# Keys that exist in Ray's runtime_env (ray.runtime_env.RuntimeEnv); a typo here would otherwise be
# silently carried to every job.
RUNTIME_ENV_KEYS = frozenset(
    {
        "working_dir",
        "py_modules",
        "py_executable",
        "excludes",
        "pip",
        "uv",
        "conda",
        "env_vars",
        "container",
        "image_uri",
        "config",
        "nsight",
        "java_jars",
        "worker_process_setup_hook",
    }
)
# runtime_env keys that install packages at run time: dev only (prod bakes them into the image).
PACKAGE_INSTALL_KEYS = ("pip", "conda", "uv")
# This program's cap on a local working_dir, not Ray's: Ray 2.60 refuses a package of its gRPC
# message size (512 MiB) and warns at half that; the cap keeps what is zipped and shipped with
# every change small (ray#55877), and `ray-platform submit --max-size` defaults to the same.
WORKING_DIR_LIMIT_BYTES = 100 * 1024 * 1024

Rule = Callable[[Settings, Path], list[str]]


def _carries_ray_version(key: str, image: str, version: str) -> list[str]:
    found = image_ray_version(image)
    if found is None:
        return [message(key, image, f"needs a tag carrying Ray {version}, e.g. :{version}")]
    if found != version:
        return [message(key, image, f"carries Ray {found} but ray.version is {version}")]
    return []


def image_carries_ray_version(s: Settings, _: Path) -> list[str]:
    """The image's tag names the Ray version the cluster runs (KubeRay reads rayVersion)."""
    return _carries_ray_version("ray.image", s.ray.image, s.ray.version)


def base_image_pinned_and_versioned(s: Settings, _: Path) -> list[str]:
    """The app image is built on the base image: by digest (the same inputs build the same image,
    whatever the tag points at later), and with the Ray the cluster runs (the app image inherits
    the base's Ray, and its tag carries the same version)."""
    base = s.ray.base_image
    if base is None:
        return []
    if not DIGEST.search(base):
        return [
            message(
                "ray.baseImage",
                base,
                "must be pinned by digest (…@sha256:<64 hex>): the app image is built on exactly "
                "this image",
            )
        ]
    return _carries_ray_version("ray.baseImage", base, s.ray.version)


def prod_image_pinned(s: Settings, _: Path) -> list[str]:
    if s.mode == "prod" and not DIGEST.search(s.ray.image):
        return [
            message(
                "ray.image", s.ray.image, "must be pinned by digest in prod (…@sha256:<64 hex>)"
            )
        ]
    return []


def prod_installs_nothing(s: Settings, _: Path) -> list[str]:
    """Prod bakes dependencies into the image: nothing is installed at run time."""
    if s.mode != "prod":
        return []
    ray = s.ray
    errors = [
        message(
            f"ray.runtimeEnv.{key}",
            ray.runtime_env[key],
            "installs packages at run time; prod bakes dependencies into the image",
        )
        for key in PACKAGE_INSTALL_KEYS
        if key in ray.runtime_env
    ]
    wheels = [m for m in ray.runtime_env.get("py_modules") or [] if str(m).endswith(".whl")]
    if wheels:
        errors.append(
            message(
                "ray.runtimeEnv.py_modules",
                wheels,
                "installs wheels at run time; prod bakes dependencies into the image",
            )
        )
    if ray.shared_packages:
        errors.append(
            message(
                "ray.sharedPackages",
                list(ray.shared_packages),
                "is dev only; prod bakes dependencies into the image",
            )
        )
    return errors


def replica_bounds(s: Settings, _: Path) -> list[str]:
    return [
        message(
            f"ray.workerGroups[{i}].maxReplicas",
            group.max_replicas,
            f"is below minReplicas ({group.min_replicas})",
        )
        for i, group in enumerate(s.ray.worker_groups)
        if group.max_replicas < group.min_replicas
    ]


def token_auth_versions(s: Settings, _: Path) -> list[str]:
    """Token auth exists from Ray 2.52 and KubeRay 1.5.1 on."""
    if s.ray.auth != "token":
        return []
    errors = []
    if semver_tuple(s.ray.version) < (2, 52, 0):
        errors.append(
            message(
                "ray.auth", "token", f"needs Ray 2.52.0 or later (ray.version is {s.ray.version})"
            )
        )
    if semver_tuple(s.operator.version) < (1, 5, 1):
        errors.append(
            message(
                "ray.auth",
                "token",
                f"needs KubeRay 1.5.1 or later (operator.version is {s.operator.version})",
            )
        )
    return errors


def jupyter_is_dev_only_and_tokened(s: Settings, _: Path) -> list[str]:
    """Jupyter runs code for whoever reaches it: dev only, always behind a token, and
    installed onto the shared file system."""
    jupyter = s.ray.jupyter
    if not jupyter.enabled:
        return []
    if s.mode == "prod":
        return [message("ray.jupyter.enabled", True, "is dev only; prod runs no notebook server")]
    errors = []
    token = s.jupyter_token.get_secret_value() if s.jupyter_token else ""
    if len(token.strip()) < 16:
        errors.append(
            f"{CONFIG_PREFIX}:jupyterToken must be a secret of 16 or more characters when "
            "ray.jupyter.enabled (pulumi config set --secret ray-platform:jupyterToken "
            '"$(openssl rand -hex 24)")'
        )
    if not s.storage.shared_filesystem.enabled:
        errors.append(
            message(
                "ray.jupyter.enabled",
                True,
                "needs storage.sharedFilesystem.enabled (notebooks and JupyterLab live there)",
            )
        )
    return errors


def managed_operator_needs_the_clouds(s: Settings, _: Path) -> list[str]:
    """`install: managed` means the cluster's provider runs KubeRay: only a cloud whose block
    names one (`CloudSettings.MANAGED_OPERATOR`; checked against the cluster at lookup)."""
    if s.operator.install == "managed" and not s.cloud_settings.MANAGED_OPERATOR:
        return [
            message(
                "operator.install",
                "managed",
                f"is for a provider-managed KubeRay; cloud {s.cloud} has none "
                "(use helm, or external for an operator you run)",
            )
        ]
    return []


def operator_recreates_pods(s: Settings, _: Path) -> list[str]:
    """The RayCluster relies on `upgradeStrategy: Recreate` (KubeRay 1.6) to roll its pods."""
    if semver_tuple(s.operator.version) < (1, 6, 0):
        return [
            message(
                "operator.version",
                s.operator.version,
                "is older than 1.6.0, which recreates Ray pods when the RayCluster changes",
            )
        ]
    return []


def shared_packages_valid(s: Settings, _: Path) -> list[str]:
    packages = s.ray.shared_packages
    errors = []
    if packages and not s.storage.shared_filesystem.enabled:
        errors.append(
            message(
                "ray.sharedPackages",
                list(packages),
                "needs storage.sharedFilesystem.enabled (packages live on the shared file system)",
            )
        )
    # Everything pip would refuse in the head's installer is refused here, before `up`: a bad
    # package set would otherwise only show in the installer's log, retried with backoff.
    seen: dict[str, int] = {}
    for i, req in enumerate(packages):
        key = f"ray.sharedPackages[{i}]"
        if not is_requirement(req):
            errors.append(message(key, req, "is not a pip requirement such as pandas==2.2.3"))
            continue
        name = requirement_name(req)
        if name is None:
            continue
        if name in seen:
            errors.append(
                message(
                    key,
                    req,
                    f"names {name} again (ray.sharedPackages[{seen[name]}]): one requirement "
                    "per package",
                )
            )
        elif name == "jupyterlab" and s.ray.jupyter.enabled and s.mode == "dev":
            errors.append(
                message(
                    key,
                    req,
                    "names JupyterLab, which ray.jupyter.enabled installs itself at "
                    f"ray.jupyter.version ({s.ray.jupyter.version}): drop it here",
                )
            )
        seen.setdefault(name, i)
    return errors


def shared_package_names(s: Settings) -> dict[str, str]:
    """Normalized name → requirement of every package the head installs onto the shared file
    system (ray.sharedPackages, and JupyterLab when it is on)."""
    requirements = list(s.ray.shared_packages)
    if s.ray.jupyter.enabled:
        requirements.append(f"jupyterlab=={s.ray.jupyter.version}")
    return {name: req for req in requirements if (name := requirement_name(req))}


def _installer_entries(value: object) -> list[str]:
    """The requirements of a runtime_env `pip`/`uv` value (a list, or {packages: [...]})."""
    packages = value.get("packages") if isinstance(value, dict) else value
    return [p for p in packages if isinstance(p, str)] if isinstance(packages, list) else []


def runtime_env_does_not_shadow_shared_packages(s: Settings, _: Path) -> list[str]:
    """The shared packages are on PYTHONPATH, which comes before a job's pip/uv environment:
    a runtime_env entry for one of them installs a copy that never loads."""
    shared = shared_package_names(s)
    errors = []
    for key in ("pip", "uv"):
        for entry in _installer_entries(s.ray.runtime_env.get(key)):
            name = requirement_name(entry)
            if name in shared:
                errors.append(
                    message(
                        f"ray.runtimeEnv.{key}",
                        entry,
                        f"names {name}, a shared package ({shared[name]}): the shared copy is "
                        "on PYTHONPATH, ahead of the job's environment, and would load instead; "
                        "change its version in ray.sharedPackages, or drop it here",
                    )
                )
    return errors


def operator_has_own_namespace(s: Settings, _: Path) -> list[str]:
    if s.operator.namespace == s.kubernetes.namespace:
        return [
            message(
                "operator.namespace",
                s.operator.namespace,
                "must differ from kubernetes.namespace (the operator gets its own namespace)",
            )
        ]
    return []


def _dir_size(path: Path, limit: int) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
            if total > limit:
                break
    return total


def runtime_env_valid(s: Settings, base_dir: Path) -> list[str]:
    """Known fields, well-formed pip/env_vars, and a working_dir Ray can take."""
    env = s.ray.runtime_env
    errors: list[str] = []

    def err(key: str, value: object, problem: str) -> None:
        errors.append(message(f"ray.runtimeEnv.{key}", value, problem))

    for key in sorted(set(env) - RUNTIME_ENV_KEYS):
        err(key, env[key], "is not a runtime_env field Ray knows (check its spelling)")

    pip = env.get("pip")
    packages = pip.get("packages") if isinstance(pip, dict) else pip
    if pip is not None and not (
        isinstance(packages, list) and all(isinstance(p, str) and p.strip() for p in packages)
    ):
        err("pip", pip, "must be a list of requirement strings (or {packages: [...]})")
    env_vars = env.get("env_vars")
    if env_vars is not None and not (
        isinstance(env_vars, dict) and all(isinstance(v, str) for v in env_vars.values())
    ):
        err("env_vars", env_vars, "must map names to strings")
    working_dir = env.get("working_dir")
    if working_dir is None:
        return errors
    if not isinstance(working_dir, str) or not working_dir:
        err("working_dir", working_dir, "must be a local directory or a .zip URI")
    elif "://" in working_dir:
        scheme = working_dir.split("://", 1)[0]
        if scheme not in ("s3", "gs", "https"):
            err("working_dir", working_dir, "must use s3://, gs:// or https:// (a .zip)")
        elif not working_dir.endswith(".zip"):
            err("working_dir", working_dir, "must point at a .zip archive")
    else:
        path = (base_dir / working_dir).resolve()
        if not path.is_dir():
            err("working_dir", working_dir, f"is not a directory (resolved to {path.name!r})")
            return errors
        try:
            size = _dir_size(path, WORKING_DIR_LIMIT_BYTES)
        except OSError as os_err:
            err("working_dir", working_dir, f"cannot be read ({os_err.strerror})")
            return errors
        if size > WORKING_DIR_LIMIT_BYTES:
            err(
                "working_dir",
                working_dir,
                "is over the platform's 100 MiB working_dir limit; zip it into the bucket instead",
            )
    return errors


def _group_start_params(key: str, group: GroupSettings, *, head: bool) -> list[str]:
    params = group.ray_start_params
    errors = [
        message(f"{key}.rayStartParams.{name}", params[name], problem)
        for name, problem in ray_start.problems(params, head=head)
    ]
    if errors:
        return errors
    # What the pod has, which Ray cannot see past: more GPUs than the container gets would be
    # scheduled onto and fail; an object store as big as the container's memory cannot start.
    gpus = params.get("num-gpus")
    if gpus is not None and int(gpus) > group.gpu:
        errors.append(
            message(
                f"{key}.rayStartParams.num-gpus",
                gpus,
                f"is more than the {group.gpu} GPU(s) the pod gets ({key}.gpu)",
            )
        )
    store = params.get("object-store-memory")
    if store is not None:
        from components.kuberay.sizing import memory_bytes

        if int(store) >= memory_bytes(group.memory):
            errors.append(
                message(
                    f"{key}.rayStartParams.object-store-memory",
                    store,
                    f"is not below the pod's memory ({key}.memory: {group.memory})",
                )
            )
    return errors


def ray_start_params_valid(s: Settings, _: Path) -> list[str]:
    """Each group's rayStartParams as `ray start` takes them (see settings/ray_start.py)."""
    errors = _group_start_params("ray.head", s.ray.head, head=True)
    for i, group in enumerate(s.ray.worker_groups):
        errors += _group_start_params(f"ray.workerGroups[{i}]", group, head=False)
    return errors


def cloud_block_rules(s: Settings, _: Path) -> list[str]:
    return s.cloud_settings.rules(s)


RULES: tuple[Rule, ...] = (
    image_carries_ray_version,
    base_image_pinned_and_versioned,
    prod_image_pinned,
    prod_installs_nothing,
    replica_bounds,
    token_auth_versions,
    operator_recreates_pods,
    managed_operator_needs_the_clouds,
    jupyter_is_dev_only_and_tokened,
    shared_packages_valid,
    runtime_env_valid,
    runtime_env_does_not_shadow_shared_packages,
    operator_has_own_namespace,
    ray_start_params_valid,
    cloud_block_rules,
)
