"""tools/image for real (e2e tier): the Ray stand-in built with debootstrap and PyPI wheels
(root; about 3-4 minutes cold, cached in <cache>/images/ afterwards), checked inside its rootfs as
uid 1000, and both images pushed to a registry started here (Debian's `docker-registry`, or
the distribution registry tools.build made)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.image import check_ray, ensure_pause, ensure_ray, push
from tools.image.ray import DEFAULT_RAY_VERSION, PREFIX, SITE_PACKAGES, ray_layer
from tools.testing.registry_server import registry_server, served_digest

pytestmark = pytest.mark.e2e


def needs_root(fn: Any) -> Any:
    """debootstrap and chroot need root; CI runs as root, so a missing root fails (no skip)."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        assert os.geteuid() == 0, "building the Ray image needs root (debootstrap, chroot)"
        return fn(*args, **kwargs)

    checked.__name__ = fn.__name__
    checked.__doc__ = fn.__doc__
    return functools.wraps(fn)(checked)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert shutil.which("skopeo"), "no skopeo: apt-get install skopeo (tools/node-packages.sh)"
    with registry_server(tmp_path_factory.mktemp("registry")) as address:
        yield address


def test_pause_image_is_pushed_under_its_own_digest(registry: str, tmp_path: Path) -> None:
    # Any static ELF will do for the registry (the image's binary is never run here).
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)
    binary = tmp_path / "pause"
    binary.write_bytes(bytes(header) + b"e2e")
    image = ensure_pause(binary)
    assert push(image, registry) == image.digest
    assert served_digest(registry, "pause", "3.10") == image.digest


@needs_root
def test_ray_stand_in_builds_behaves_like_a_conda_prefix_and_pushes(registry: str) -> None:
    image = ensure_ray(DEFAULT_RAY_VERSION)
    assert image.ref == f"rayproject/ray:{DEFAULT_RAY_VERSION}-py311"

    inspected = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--config", f"oci:{image.layout}:{image.tag}"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(inspected.stdout)["config"]
    assert config["User"] == "1000"
    assert config["WorkingDir"] == "/home/ray"
    assert f"PATH={PREFIX}/bin:" in " ".join(config["Env"])

    # Inside the rootfs, as uid 1000: the prefix, the child venv, the installer's flow, Ray.
    out = check_ray(DEFAULT_RAY_VERSION)
    assert f"{SITE_PACKAGES}/ray/__init__.py" in out
    assert "installed: requests_toolbelt requests_toolbelt-1.0.0.dist-info tabulate" in out
    assert "task: 42" in out and "probes: success" in out

    # The check left the cached rootfs as it was: packing it again gives the same digest.
    assert ensure_ray(DEFAULT_RAY_VERSION, repack=True).digest == image.digest
    # The files the Ray user must own.
    tree = ray_layer(image.layout.parent / "rootfs").root
    assert (tree / "home/ray/pip-freeze.txt").stat().st_uid == 1000
    assert (tree / "tmp").stat().st_mode & 0o7777 == 0o1777

    assert push(image, registry) == image.digest
    assert served_digest(registry, "rayproject/ray", image.tag) == image.digest
