"""The dev shared-packages installer (the head's init container script), run for real under
/bin/sh against a throwaway virtualenv standing in for the Ray image, with a local wheel index
(no network)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from components.raycluster_spec import INSTALL_SCRIPT


def _wheel(index: Path, name: str, version: str, requires: str = "") -> None:
    """A minimal pure-Python wheel, written by hand."""
    dist = f"{name}-{version}.dist-info"
    requires_line = f"Requires-Dist: {requires}\n" if requires else ""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires_line}"
        ),
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
    """An environment like the Ray image's: a base (non-venv) `python` with pip, and packages
    the image already ships (here on its PYTHONPATH, so the real interpreter stays untouched)."""
    root = tmp_path_factory.mktemp("image")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    index = root / "index"
    index.mkdir()
    for name, version in (("rayish", "1.0"), ("rayish", "2.0"), ("extra", "0.1")):
        _wheel(index, name, version)
    _wheel(index, "needsrayish", "0.1", requires="rayish")
    # A locally built package the index cannot serve (like torch==2.5.1+cu121 in GPU images).
    _wheel(index, "torchy", "2.5.1+cu121")
    _wheel(index, "needstorchy", "0.1", requires="torchy")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "PYTHONPATH": str(root / "image-site"),
        "HOSTNAME": "ray-head-abcde",
    }
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [
            *("python", "-m", "pip", "install", "-q", "--target", str(root / "image-site")),
            *("rayish==1.0", "torchy==2.5.1+cu121"),
        ],
        env=env,
        check=True,
    )
    (index / "torchy-2.5.1+cu121-py3-none-any.whl").unlink()
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
    assert (target / ".complete").exists()
    assert (target / "site-packages" / "extra" / "__init__.py").exists()
    assert not list(target.parent.glob("*.tmp.*"))
    second = _run(image, target, "extra==0.1")
    assert second.returncode == 0 and "already in" in second.stdout


def test_only_what_the_image_lacks_lands_on_pythonpath(
    image: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "pkgs"
    result = _run(image, target, "needsrayish==0.1\nneedstorchy==0.1")
    assert result.returncode == 0, result.stderr
    installed = {p.name for p in (target / "site-packages").iterdir()}
    assert {"needsrayish", "needstorchy"} <= installed
    assert "rayish" not in installed and "torchy" not in installed


def test_never_replaces_what_the_image_ships(image: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "pkgs"
    result = _run(image, target, "rayish==2.0")
    assert result.returncode != 0
    assert "rayish" in result.stderr
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no half-installed directory left behind
