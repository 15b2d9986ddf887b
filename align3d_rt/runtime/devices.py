"""Which device a Detector runs on: 'auto' picks CUDA when a GPU is usable and the backend runs there."""
from __future__ import annotations

import os
from typing import Sequence

from align3d_rt.errors import BackendUnavailable, OptionError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """A real CUDA GPU is visible to numba (never the simulator: it is for tests, asked for by name)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver install counts as no GPU
        return False


def resolve_device(requested: str, supported: Sequence[str]) -> str:
    """'auto' -> 'cuda' when a GPU is usable and the backend runs there, else 'cpu'; 'cpu'/'cuda' checked."""
    req = str(requested).lower()
    if req.startswith("cuda:"):
        req = "cuda"  # one GPU per process: choose it with CUDA_VISIBLE_DEVICES
    if req == "auto":
        return "cuda" if "cuda" in supported and cuda_available() else "cpu"
    if req not in ("cpu", "cuda"):
        raise OptionError(f"device {requested!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if req not in supported:
        raise BackendUnavailable(f"this backend runs on {', '.join(supported)}, not on '{req}'")
    return req
