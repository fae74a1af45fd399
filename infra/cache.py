"""Where ray-platform caches what it fetches or builds, outside any clone.

One answer for the program (the KubeRay CRDs it fetches) and for tools/ (the binaries it builds):
`$RAY_PLATFORM_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/ray-platform`. An empty variable counts as
unset (XDG says so), so the cache never lands in a directory relative to wherever a run started.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache directory (not created here)."""
    explicit = os.environ.get("RAY_PLATFORM_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "ray-platform"
