"""The pod sandbox image `pause:3.10` (containerd's `registry.k8s.io/pause:3.10`): one static
binary at /pause, run as 65535:65535, as upstream's image is."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path

from cli.image import oci
from tools.image.common import (
    Image,
    ImageError,
    human_size,
    images_root,
    input_key,
    locked,
    log,
    read_record,
    write_record,
)

PAUSE_REPO = "pause"
"""registry.k8s.io/pause → `pause` on the local registry, which mirrors registry.k8s.io."""
PAUSE_TAG = "3.10"
RECIPE = "1"

PAUSE_CONFIG = oci.ImageConfig(
    user="65535:65535",
    env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
    working_dir="/",
    entrypoint=("/pause",),
)


def _elf_interpreter(data: bytes) -> bool | None:
    """True if an ELF64 little-endian executable asks for a dynamic loader (PT_INTERP), False if
    it does not, None if `data` is not such an ELF file."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return None
        if struct.unpack_from("<I", data, off)[0] == 3:  # PT_INTERP
            return True
    return False


def pause_inputs(binary_sha256: str, tag: str = PAUSE_TAG) -> dict[str, object]:
    return {
        "recipe": RECIPE,
        "binary": binary_sha256,
        "tag": tag,
        "config": PAUSE_CONFIG.to_json([]),
    }


def ensure_pause(pause_binary: Path, *, tag: str = PAUSE_TAG) -> Image:
    """The pause image for `pause_binary` (a static linux/amd64 executable), built once per
    binary content and cached in `<cache>/images/pause/<key>/`."""
    binary = Path(pause_binary)
    try:
        data = binary.read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read the pause binary {binary}: {e.strerror}") from None
    dynamic = _elf_interpreter(data)
    if dynamic is None:
        raise ImageError(f"{binary} is not a 64-bit little-endian ELF executable")
    if dynamic:
        raise ImageError(
            f"{binary} is dynamically linked; the pause image holds nothing but /pause, "
            "so it must be static (CGO_ENABLED=0 or -static)"
        )
    key = input_key(pause_inputs(hashlib.sha256(data).hexdigest(), tag))
    directory = images_root() / "pause" / key
    cached = read_record(directory)
    if cached is not None:
        log(f"{cached.ref} cached ({cached.digest})")
        return cached
    with locked(directory.with_suffix(".lock")):
        cached = read_record(directory)
        if cached is not None:
            return cached
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".tree-") as tmp:
            tree = Path(tmp) / "rootfs"
            tree.mkdir()
            target = tree / "pause"
            shutil.copyfile(binary, target)
            os.chmod(target, 0o755)
            result = oci.write_layout(
                directory / "layout",
                [oci.TreeLayer(tree, owner=oci.fixed_owner(0, 0))],
                PAUSE_CONFIG,
                tag,
            )
        image = Image(PAUSE_REPO, tag, directory / "layout", result.digest, result.size)
        write_record(directory, image, {"key": key, "binary": str(binary)})
    log(f"{image.ref} {image.digest} ({human_size(image.size)})")
    return image
