"""``library_versions``: the one list of libraries whose versions are recorded beside every result."""
from __future__ import annotations

import platform

VERSION_DISTS = (
    "align3d_rt", "numpy", "numba", "numba-cuda", "scipy", "scikit-learn", "scikit-image", "torch",
    "open_clip_torch", "safetensors", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "tensorrt",
    "open3d-cpu", "open3d", "matplotlib",
)


def library_versions() -> dict[str, str]:
    """Python's version and the installed versions of ``VERSION_DISTS`` (those present here)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in VERSION_DISTS:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out
