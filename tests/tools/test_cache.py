"""One cache root for the program and tools/ (infra/cache.py), and everything placed under it."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cache import cache_root
from tools import build
from tools.devcluster import localcluster


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_PLATFORM_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_default_is_under_the_home_cache(home: Path) -> None:
    assert cache_root() == home / ".cache" / "ray-platform"


def test_xdg_cache_home_is_honoured(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    assert cache_root() == home / "xdg" / "ray-platform"


@pytest.mark.parametrize("variable", ["XDG_CACHE_HOME", "RAY_PLATFORM_CACHE"])
def test_empty_variables_count_as_unset(
    home: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """An empty value must not put the cache in a directory relative to the cwd."""
    monkeypatch.setenv(variable, "")
    root = cache_root()
    assert root == home / ".cache" / "ray-platform"
    assert root.is_absolute()


def test_ray_platform_cache_wins_and_expands_the_home(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    monkeypatch.setenv("RAY_PLATFORM_CACHE", "~/rp")
    assert cache_root() == home / "rp"


def test_binaries_and_the_cluster_live_under_the_cache_root(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_PLATFORM_CACHE", str(home / "rp"))
    assert build.cache_root is cache_root  # one implementation, re-exported for tools/ callers
    assert build.bin_dir() == home / "rp" / "bin" / "current"
    spec = build.load_versions()["tools"]["etcd"]
    assert build._install_dir("etcd", spec) == home / "rp" / "bin" / f"etcd-{spec['version']}"
    assert localcluster.default_state_dir() == home / "rp" / "localcluster"
