"""Push a built image to the local registry with skopeo.

Why a tool rather than a registry client of our own: pushing is the registry API's stateful
part — a HEAD per blob, an upload session per missing blob (POST, then PATCH/PUT against the
`Location` the registry hands back, which may be relative or carry its own query), the digest
check on completion, the manifest PUT with its exact media type, and, on real registries, the
token-auth dance and retries of half-done uploads. skopeo (containers/image, Debian's `skopeo`
package) is the maintained implementation of exactly that, and it is a second, independent
reader of the layouts `oci.py` writes: a mistake there (a wrong size, digest or media type)
fails loudly at push time instead of inside containerd on a node. `--preserve-digests` forbids
it to rewrite anything (it would otherwise gzip our uncompressed layers for a registry), so the
pushed manifest is byte for byte the one in the layout and keeps its digest.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from tools.image.common import Image, ImageError, images_root, log, require_tool, run

_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$")


def push_argv(skopeo: str, image: Image, registry: str, digestfile: Path) -> list[str]:
    """skopeo's command line: plain HTTP to the registry (`--dest-tls-verify=false`), the layout
    untouched (`--preserve-digests`), the pushed manifest's digest written to `digestfile`."""
    return [
        skopeo,
        "--insecure-policy",  # our own layout: no signature policy to consult
        "copy",
        "--quiet",
        "--retry-times",
        "3",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--digestfile",
        str(digestfile),
        f"oci:{image.layout}:{image.tag}",
        f"docker://{registry}/{image.repo}:{image.tag}",
    ]


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
