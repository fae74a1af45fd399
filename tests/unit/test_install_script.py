"""The dev shared-packages installer (the head's init container script), run for real under
/bin/sh against a throwaway virtualenv standing in for the Ray image, with a local wheel index
(no network)."""

from __future__ import annotations

import os
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

from components.raycluster_spec import INSTALL_SCRIPT


def _wheel(index: Path, name: str, version: str) -> None:
    """A minimal pure-Python wheel, written by hand."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    files[f"{dist}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(index / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment like the Ray image's: `python` with pip, one package already installed."""
    root = tmp_path_factory.mktemp("image")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    index = root / "index"
    index.mkdir()
    for name, version in (("rayish", "1.0"), ("rayish", "2.0"), ("extra", "0.1")):
        _wheel(index, name, version)
    env = {
        **os.environ,
        "PATH": f"{root / 'venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "HOSTNAME": "ray-head-abcde",
    }
    subprocess.run(["python", "-m", "pip", "install", "-q", "rayish==1.0"], env=env, check=True)
    return env


def _run(env: dict[str, str], target: Path, requirements: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", INSTALL_SCRIPT],
        env={**env, "TARGET": str(target), "REQUIREMENTS": requirements},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_installs_once_into_the_target(image: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "shared" / "python-packages" / "abc"
    first = _run(image, target, "extra==0.1")
    assert first.returncode == 0, first.stderr
    assert (target / ".complete").exists() and (target / "extra" / "__init__.py").exists()
    assert not list(target.parent.glob("*.tmp.*"))
    second = _run(image, target, "extra==0.1")
    assert second.returncode == 0 and "already in" in second.stdout


def test_never_replaces_what_the_image_ships(image: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "pkgs"
    result = _run(image, target, "rayish==2.0")
    assert result.returncode != 0
    assert "rayish" in result.stderr
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no half-installed directory left behind
