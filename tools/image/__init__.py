"""The two images a local Kubernetes node needs, built, cached and pushed without Docker.

```python
from tools.image import ensure_pause, ensure_ray, push, Image, ImageError

pause = ensure_pause(pause_binary)   # pause:3.10, /pause as entrypoint, user 65535
ray = ensure_ray("2.60.0")           # rayproject/ray:2.60.0-py311 stand-in (root, ~5 min cold)
push(ray, "127.0.0.1:5000")          # -> "sha256:..." (== ray.digest)
```

An `Image` is an OCI image layout in `<cache>/images/` whose manifest digest is `digest`; the
same inputs always give the same digest (see `oci.py`). Layouts are written by our own code
(`oci.py`); the Ray root file system comes from Debian packages (debootstrap) and PyPI wheels
(`ray.py`, `rootfs.py`); pushing uses skopeo (`registry.py`). Progress goes to stderr as `[image]`
lines; failures are one-line `ImageError`s.

CLI: `python -m tools.image {pause,ray,push,lock,check} ...` (`--help`).
"""

from __future__ import annotations

from tools.image.common import Image, ImageError
from tools.image.pause import PAUSE_REPO, PAUSE_TAG, ensure_pause
from tools.image.ray import RAY_REPO, check_ray, ensure_ray, tag_for
from tools.image.registry import push

__all__ = [
    "PAUSE_REPO",
    "PAUSE_TAG",
    "RAY_REPO",
    "Image",
    "ImageError",
    "check_ray",
    "ensure_pause",
    "ensure_ray",
    "push",
    "tag_for",
]
