"""Minimal pure-Python wheels written by hand, for installs with no network."""

from __future__ import annotations

import zipfile
from pathlib import Path


def write_wheel(index: Path, name: str, version: str, requires: str = "") -> None:
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
