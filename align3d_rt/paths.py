"""Where align3d_rt keeps its caches."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(sub: str = "") -> Path:
    """Cache root (env ALIGN3D_CACHE, default ~/.cache/align3d_rt), optionally a sub-folder of it."""
    root = Path(os.environ.get("ALIGN3D_CACHE", Path.home() / ".cache" / "align3d_rt"))
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path
