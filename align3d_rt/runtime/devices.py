"""Probing the machine: which device a Detector runs on ('auto' picks CUDA when a GPU is usable and the
backend runs there), the GPU's name and TensorRT (engines are keyed by both)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from align3d_rt.errors import BackendUnavailable, OptionError, import_backend

DEVICE_CHOICES = ("auto", "cpu", "cuda")
TRT_HINT = ("pip install tensorrt on a machine with an NVIDIA GPU and driver; "
            "its wheels come from NVIDIA's package index")


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


def import_tensorrt() -> Any:
    """``import tensorrt`` or BackendUnavailable with an install hint."""
    return import_backend("tensorrt", "TensorRT", TRT_HINT)


def gpu_name(device: int = 0) -> str:
    """Name of the CUDA device (via torch, else pycuda); BackendUnavailable when there is none."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device))
        raise BackendUnavailable("no CUDA GPU is visible to torch (TensorRT needs an NVIDIA GPU)")
    except ImportError:
        pass
    try:
        import pycuda.driver as cuda

        cuda.init()
        return str(cuda.Device(device).name())
    except Exception as err:  # noqa: BLE001 - pycuda missing or no driver
        raise BackendUnavailable(f"no CUDA GPU found (torch missing; pycuda: {err})") from None
