"""Run this program with the real Pulumi engine, offline: the CLI, Python host and Kubernetes
provider built by tools/build.py, a file backend, no plugin downloads.

Used by the main job (`python -m tools.devcluster.stack`), the e2e tests, the unit tests' stack
files and the benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from infra.kuberay_release import CHART_DIR

ROOT = Path(__file__).resolve().parents[2]  # tools/devcluster/engine.py -> the repository
ENGINE_BINARIES = ["pulumi", "pulumi-language-python", "pulumi-resource-kubernetes"]
# The local stack's only secret is the throwaway MinIO key of the local control plane (set by
# tools/devcluster/stack.py into the work dir's stack file); the passphrase mainly satisfies the
# backend.
LOCAL_PASSPHRASE = "ray-platform-local"


@dataclass(frozen=True)
class Engine:
    """Where the engine binaries are and the environment they run with."""

    bin_dir: Path
    env: dict[str, str]


def backend_url(state_dir: Path) -> str:
    """The file backend in `state_dir`, with `metadata=skip`: gocloud's file blob then writes no
    `.attrs` sidecar beside each file. It wrote it in place before renaming the checkpoint, so
    a kill at that moment left an empty sidecar (every later command: "failed to load
    checkpoint: EOF") and the newer checkpoint unrenamed; nothing of Pulumi's reads them.
    (cli/outputs.py, which ships without tools/, says the same; a test holds them equal.)"""
    return f"{state_dir.resolve().as_uri()}?metadata=skip"


def engine(state_dir: Path, kubeconfig: Path | None) -> Engine:
    """Build (or reuse) the engine binaries and an offline environment using `state_dir`."""
    from tools.build import bin_dir, ensure

    ensure(ENGINE_BINARIES)
    bins = bin_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{bins}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_BACKEND_URL": backend_url(state_dir),
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", LOCAL_PASSPHRASE),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_HOME": str(state_dir.resolve() / ".pulumi-home"),
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        # A checkpoint after every step, as plain local.json, whatever the shell says: what a
        # killed run left in flight is read from it (recovery, and the faults tier).
        "PULUMI_SKIP_CHECKPOINTS": "false",
        "PULUMI_DIY_BACKEND_GZIP": "false",
        "PULUMI_DIY_BACKEND_ZSTD": "false",
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return Engine(bins, env)


def stack_file_config(stack: str) -> dict[str, Any]:
    """The `config:` section of the committed stack file, as written (the one reader of it: the
    mock tier's fixtures and the e2e tier both use this)."""
    import yaml

    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    return dict(data.get("config") or {})


NOT_LINKED = ("pyproject.toml", "uv.lock", CHART_DIR)
"""Not linked into the work copy. The project file and lock: see work_dir. The CRDs' chart
directory: the program writes it where it runs (the copy), and a clone that also ran the program
(a unit test, a `pulumi preview` there) has its own; linking one into the other would put the
copy's writes into the clone, or fail on the copy's real directory."""


def work_dir(
    state_dir: Path, stack: str = "local", overrides: Mapping[str, Any] | None = None
) -> Path:
    """A working copy of the project for the engine: links to the sources and a *copy* of the
    stack file, so the engine's writes (encryption salt, test config) never touch the clone.

    `overrides` replaces top-level config keys of the stack file in the copy.
    """
    import yaml

    wd = state_dir / "project"
    wd.mkdir(parents=True, exist_ok=True)
    # Everything but stack files is linked, so relative paths (a runtime_env working_dir) resolve.
    # Links into another clone (the state outlives the clone that made it: a deleted temporary
    # clone leaves them dangling) are pointed at this one; links to what this clone no longer
    # has are dropped.
    # Not pyproject.toml nor uv.lock: with them the language host's uv toolchain runs `uv sync`
    # in this directory before every run, which reinstalls the checkout's project into the
    # linked .venv from *this* path (an editable install pointing here, console scripts with
    # this path's interpreter): a state directory deleted later (a test's) would leave the
    # checkout's `ray-platform` command and `import cli` broken. Without them the host runs the
    # program with the .venv's interpreter as it is; `uv sync` in the checkout is the install.
    linked = set()
    for entry in ROOT.iterdir():
        link = wd / entry.name
        is_stack_file = entry.name.startswith("Pulumi.") and entry.name != "Pulumi.yaml"
        if is_stack_file or entry.name in (".git", *NOT_LINKED):
            continue
        linked.add(link.name)
        if link.is_symlink() and os.readlink(link) != str(entry):
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(entry)
    for link in wd.iterdir():
        if link.is_symlink() and link.name not in linked:
            link.unlink()
    stack_file = wd / f"Pulumi.{stack}.yaml"
    previous = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else {}
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    # Secrets set through the engine (the Jupyter token, the bucket's key) are kept: they are
    # encrypted with the copy's salt, and rewriting the copy must not drop them.
    kept = {
        k: v
        for k, v in ((previous or {}).get("config") or {}).items()
        if isinstance(v, dict) and set(v) == {"secure"}
    }
    data["config"] = {**kept, **stack_file_config(stack), **(overrides or {})}
    if previous and previous.get("encryptionsalt"):
        data["encryptionsalt"] = previous["encryptionsalt"]
    stack_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return wd


JUPYTER_TOKEN_KEY = "ray-platform:jupyterToken"
JUPYTER_TOKEN_FILE = "jupyter-token"
"""In the state directory (0600): the local stack's generated JupyterLab token."""


def jupyter_token(state: Path) -> str:
    """The local stack's JupyterLab token: generated once, kept 0600 in the state directory."""
    import secrets

    path = state / JUPYTER_TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) < 32:
        token = secrets.token_hex(24)
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    return token


def local_stack(eng: Engine, work_dir: Path, stack: str = "local") -> auto.Stack:
    """Select (creating if needed) `stack` of this project in the engine's file backend.

    The local stack runs JupyterLab: its token, generated once and kept beside the state
    (`work_dir` is `<state>/project`), is set as a Pulumi secret on every selection, so every
    caller (the main job, the e2e tier, the benchmarks) deploys the same stack."""
    # The Automation API finds `pulumi` on PATH and reads the backend from the environment.
    os.environ.update(eng.env)
    selected = auto.create_or_select_stack(
        stack_name=stack,
        work_dir=str(work_dir),
        opts=auto.LocalWorkspaceOptions(work_dir=str(work_dir), env_vars=eng.env),
    )
    if stack == "local":
        token = jupyter_token(work_dir.parent)
        selected.set_config(JUPYTER_TOKEN_KEY, auto.ConfigValue(token, secret=True))
    return selected


def outputs(stack: auto.Stack) -> dict[str, Any]:
    """The stack's outputs as plain values (two CLI runs: plain, then --show-secrets)."""
    return plain_outputs(stack.outputs())


def plain_outputs(found: Mapping[str, auto.OutputValue]) -> dict[str, Any]:
    """Outputs as the Automation API returns them (an up's result too), as plain values."""
    return {k: v.value for k, v in found.items()}


def summary_changes(result: Mapping[Any, int] | None) -> dict[str, int]:
    """Resource changes other than `same` from an up/preview summary (keys as plain strings:
    the Automation API types them as `OpType`, a str enum)."""
    return {
        (k.value if isinstance(k, Enum) else str(k)): v
        for k, v in (result or {}).items()
        if k != "same" and v
    }
