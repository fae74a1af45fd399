"""JupyterLab beside Ray on the dev head: the container, as plain data (no Pulumi).

Reachable only through `kubectl port-forward`: the server binds 127.0.0.1 inside the pod, and
the kubelet's port-forward (CRI `PortForward`; containerd dials `localhost:<port>` inside the
pod's network namespace) arrives there, while nothing on the pod network can connect. Under a
VM-isolated runtime (Kata) the pod's loopback is not reachable that way: such nodes are not
supported for Jupyter.

Authentication is a token, always: the Secret is mounted read-only as a file (not an environment
variable, which every process of the container inherits and `/proc/<pid>/environ` shows), Jupyter
Server reads it through `JUPYTER_TOKEN_FILE`, and the command refuses to start when the file is
missing or empty (a missing Secret keeps the container from starting at all). The token is never
on the command line, where `ps` and the pod spec would show it.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

CONTAINER_NAME = "jupyter"
TOKEN_ENV = "JUPYTER_TOKEN"
TOKEN_FILE_ENV = "JUPYTER_TOKEN_FILE"
TOKEN_VOLUME = "jupyter-token"
TOKEN_DIR = "/etc/jupyter-token"
NO_TOKEN_EXIT = 64
"""Exit status of the container when the token file is missing or empty (EX_USAGE)."""
PREFIX_ENV = "RAY_PLATFORM_JUPYTER_PREFIX"
"""The prefix JupyterLab was installed into: the shared packages' virtualenv."""

# An empty token would make Jupyter Server serve without authentication (it only warns), so
# the guard runs before it, in the shell every Ray image has. JUPYTER_TOKEN would win over the
# file in Jupyter Server: it is unset, so the Secret is the only source.
#
# JupyterLab installed onto the shared file system is imported through PYTHONPATH (the
# virtualenv's site-packages, by a symlink) into the image's Python, so JupyterLab looks for its
# application assets under the image's sys.prefix, or four directories above the symlinked
# module path: neither is the virtualenv, and /lab answers "JupyterLab application assets not
# found". When the virtualenv holds them, the guard points JupyterLab there (JUPYTERLAB_DIR) and
# Jupyter at the virtualenv's data and config directories (labextensions, and the server
# extensions JupyterLab's dependencies enable: terminals, LSP). When it does not (the image
# ships JupyterLab itself, so the installer added none), the image's own install serves.
_GUARD = (
    f"unset {TOKEN_ENV}; "
    f'if [ ! -s "${{{TOKEN_FILE_ENV}:-}}" ]; then '
    f'echo "{TOKEN_FILE_ENV} is missing or empty: refusing to start JupyterLab without a token" '
    f">&2; exit {NO_TOKEN_EXIT}; fi; "
    f'p="${{{PREFIX_ENV}:-}}"; '
    'if [ -n "$p" ] && [ -d "$p/share/jupyter/lab/static" ]; then '
    'export JUPYTERLAB_DIR="$p/share/jupyter/lab"; '
    'export JUPYTER_PATH="$p/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"; '
    'export JUPYTER_CONFIG_PATH="$p/etc/jupyter${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"; '
    "fi; "
    'exec "$@"'
)


TOKEN_DIGEST_ANNOTATION = "ray-platform/jupyter-token-digest"
"""On the head's pod template: changes with the token, so a rotation restarts Jupyter."""


@functools.lru_cache(maxsize=8)
def token_digest(token: str, salt: str) -> str:
    """A digest of the token for the pod template: Jupyter Server reads its token once, at
    start, so only a changed pod spec (a new pod) revokes the old one. Never the token, and not
    a fast hash of it either: anyone who may read pods could test guesses against a SHA-256 at
    billions a second; scrypt (n=2^14, r=8: about 16 MiB and a fraction of a second per guess)
    makes that impractical for the 16+ characters the settings demand. `salt` ties it to one
    cluster."""
    key = hashlib.scrypt(token.encode(), salt=salt.encode(), n=2**14, r=8, p=1, dklen=16)
    return key.hex()


def token_volume(token_secret_name: str) -> dict[str, Any]:
    """The pod volume of the token Secret (read-only for the owner only)."""
    return {
        "name": TOKEN_VOLUME,
        "secret": {"secretName": token_secret_name, "defaultMode": 0o400, "optional": False},
    }


def jupyter_command(port: int, root_dir: str) -> list[str]:
    """The container command: JupyterLab on 127.0.0.1:`port`, serving `root_dir`, token-only.

    Root is refused by Jupyter Server's default (`allow_root` False); it is left to that default
    rather than pinned here so a root-only test sandbox can allow it through a config file,
    which a flag would override. The container itself runs non-root (`runAsNonRoot`).
    """
    return [
        "/bin/sh",
        "-c",
        _GUARD,
        "jupyter-guard",  # $0 of the guard script
        # As a module, not the `jupyter` script: a JupyterLab installed onto the shared file
        # system is found through PYTHONPATH, with no bin/ directory on PATH.
        "python",
        "-m",
        "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        # Another port would silently break the port-forward that targets this one.
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.open_browser=False",
        # Whoever holds the token must not be able to swap it for a password of their own.
        "--PasswordIdentityProvider.allow_password_change=False",
        # No internet from the head, and no phoning home from it either.
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]


def jupyter_container(
    *,
    image: str,
    port: int,
    root_dir: str,
    token_secret_name: str,
    token_secret_key: str,
    env: list[dict[str, Any]],
    volume_mounts: list[dict[str, Any]],
    resources: dict[str, Any],
    security_context: dict[str, Any],
    prefix: str | None = None,
) -> dict[str, Any]:
    """The `jupyter` container for the head pod spec.

    The pod must carry `token_volume(token_secret_name)`. `env` is appended after
    `JUPYTER_TOKEN_FILE` (pass the Ray address, PYTHONPATH, bucket URI… the Ray container has);
    `volume_mounts` must include the shared file system holding `root_dir`; `security_context`
    is the hardened one every container gets, and is tightened here, never loosened (non-root,
    no privilege escalation). `prefix` is the (resolved) virtualenv JupyterLab may have been
    installed into: its assets are served from there when it holds them.

    The head runs it as a native sidecar (an init container with `restartPolicy: Always`, after
    the installer that provides JupyterLab): in the head's `restartPolicy: Never` pod a regular
    container that ends (File > Shut Down, an OOM kill) would stay down for good, since KubeRay
    only replaces the pod when the Ray container ends; the kubelet restarts a sidecar.

    No probes on purpose: a sidecar's readiness counts in the pod's, so a failing readiness
    probe would take the Ray head out of its Service; a startup probe would hold the Ray
    container back until JupyterLab answers; and HTTP/TCP probes target the pod IP, where this
    server does not listen. While it restarts the pod is briefly not ready.
    """
    if not 0 < port < 65536:
        raise ValueError(f"jupyter port {port} is not a TCP port")
    if not root_dir.startswith("/"):
        raise ValueError(f"jupyter root_dir {root_dir!r} is not an absolute path")
    if any(e.get("name") in (TOKEN_ENV, TOKEN_FILE_ENV) for e in env):
        raise ValueError(f"env must not set {TOKEN_ENV}: it comes from the Secret")
    if prefix is not None and not prefix.startswith("/"):
        raise ValueError(f"jupyter prefix {prefix!r} is not an absolute path")
    hardened = {**security_context, "runAsNonRoot": True, "allowPrivilegeEscalation": False}
    token = {"name": TOKEN_FILE_ENV, "value": f"{TOKEN_DIR}/{token_secret_key}"}
    own = [token] if prefix is None else [token, {"name": PREFIX_ENV, "value": prefix}]
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "command": jupyter_command(port, root_dir),
        "workingDir": root_dir,
        "env": [*own, *env],
        # Documents the port for `kubectl port-forward pod/<head> <port>`; nothing is exposed.
        "ports": [{"name": CONTAINER_NAME, "containerPort": port, "protocol": "TCP"}],
        "volumeMounts": [
            *volume_mounts,
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
        ],
        "resources": resources,
        "securityContext": hardened,
    }
