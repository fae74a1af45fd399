"""Paths tools/ computes from its modules' own place in the tree (`Path(__file__).parents[N]`)
point where they should: moving a module (tools/devcluster/, tools/testing/) changes N, and a
wrong N is found here rather than by the e2e tier. The entry points run as `python -m` from any
working directory, as the supervised components and tools/up run them (only `--help`: nothing
starts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import build
from tools.devcluster import engine, stack
from tools.devcluster.localcluster import process
from tools.testing import pulumi_mocks, scan

ROOT = Path(__file__).resolve().parents[2]


def test_every_repository_root_is_the_checkout() -> None:
    for root in (engine.ROOT, process.REPO_ROOT, pulumi_mocks.ROOT, scan.ROOT):
        assert root == ROOT
    assert (engine.ROOT / "Pulumi.yaml").is_file()


def test_build_inputs_are_found_beside_build_py() -> None:
    assert build.VERSIONS_FILE == ROOT / "tools" / "versions.json"
    assert build.VERSIONS_FILE.is_file()
    assert build.WRAPPERS_DIR.is_dir()


def test_the_scanner_environment_is_found() -> None:
    assert (scan.SCANNER_PROJECT / "pyproject.toml").is_file()


def test_env_puts_the_projects_kubectl_first_on_path(tmp_path: Path) -> None:
    exports = stack.env_exports(tmp_path / "kubeconfig")
    path_line = exports.splitlines()[0]
    assert path_line.startswith(f"export PATH={ROOT / 'tools' / 'bin'}:")
    assert os.access(ROOT / "tools" / "bin" / "kubectl", os.X_OK)


@pytest.mark.parametrize(
    "module", ["tools.devcluster.stack", "tools.devcluster.localcluster", "tools.build"]
)
def test_entry_points_run_from_any_directory(module: str, tmp_path: Path) -> None:
    """process.py makes its supervisor importable through PYTHONPATH=REPO_ROOT."""
    env = {**os.environ, "PYTHONPATH": str(process.REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
