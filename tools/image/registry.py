"""Push a built image to the local registry: skopeo's command line is the one the installed
command uses (cli/image/registry.py says why skopeo), over plain HTTP, the layout untouched.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from cli.image.registry import push_argv as _push_argv
from tools.image.common import Image, ImageError, images_root, log, require_tool, run

_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$")


def push_argv(skopeo: str, image: Image, registry: str, digestfile: Path) -> list[str]:
    """To `<registry>/<repo>:<tag>` over plain HTTP (the node's registry has no TLS)."""
    return _push_argv(
        skopeo,
        image.layout,
        image.tag,
        f"{registry}/{image.repo}:{image.tag}",
        digestfile,
        tls_verify=False,
    )


def push(image: Image, registry: str) -> str:
    """Copy `image` to `registry` (host:port, plain HTTP) as `<registry>/<repo>:<tag>`; returns
    the pushed manifest digest (the image's own)."""
    if not _REGISTRY.match(registry):
        raise ImageError(f"registry {registry!r} is not host:port (e.g. 127.0.0.1:5000)")
    skopeo = require_tool("skopeo", "skopeo", "it pushes the images to the local registry")
    log_file = images_root() / "logs" / "push.log"
    target = f"{registry}/{image.repo}:{image.tag}"
    log(f"pushing {image.ref} to {target}")
    with tempfile.TemporaryDirectory(prefix="image-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        try:
            run(
                push_argv(skopeo, image, registry, digestfile),
                log_file=log_file,
                what="skopeo copy",
            )
        except ImageError as e:
            if "connection refused" in str(e).lower():
                raise ImageError(f"no registry answers on {registry}: {e}") from None
            raise
        pushed = digestfile.read_text(encoding="utf-8").strip()
    if pushed != image.digest:
        raise ImageError(f"{target} was pushed as {pushed}, not as the layout's {image.digest}")
    log(f"pushed {target}@{pushed}")
    return pushed
