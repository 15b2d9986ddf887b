"""Host and device arrays behind one small interface: numpy, torch tensors (CPU or CUDA), numba
device arrays and anything exposing ``__cuda_array_interface__`` or DLPack.

Device arrays move between torch and numba without copies (``__cuda_array_interface__``).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def is_device(x: Any) -> bool:
    """True for arrays that live on a CUDA device (torch CUDA tensors, numba/cupy device arrays)."""
    if isinstance(x, np.ndarray):
        return False
    if _is_torch(x):
        return bool(getattr(x, "is_cuda", False))
    if hasattr(x, "__cuda_array_interface__"):
        return True
    try:
        from numba import cuda

        return bool(cuda.devicearray.is_cuda_ndarray(x))
    except ImportError:
        return False


def dtype_name(x: Any) -> str:
    """'uint8', 'float32', ... for numpy, torch and numba arrays alike."""
    return str(x.dtype).replace("torch.", "")


def to_host(x: Any) -> np.ndarray:
    """A numpy copy (device arrays) or view (host arrays) of ``x``."""
    if isinstance(x, np.ndarray):
        return x
    if _is_torch(x):
        return x.detach().cpu().numpy()
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    if hasattr(x, "__cuda_array_interface__"):
        from numba import cuda

        return cuda.as_cuda_array(x).copy_to_host()
    if hasattr(x, "__dlpack__"):
        return np.from_dlpack(x)
    return np.asarray(x)


def as_numba(x: Any) -> Any:
    """A numba device view of a device array (no copy)."""
    from numba import cuda

    if cuda.devicearray.is_cuda_ndarray(x):
        return x
    return cuda.as_cuda_array(x)


def concat(parts: list[Any]) -> Any:
    """Concatenate chunk outputs along axis 0 on their own side (host or device)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if _is_torch(first):
        import torch

        return torch.cat(parts, dim=0)
    from numba import cuda

    rows = sum(int(p.shape[0]) for p in parts)
    out = cuda.device_array((rows, *first.shape[1:]), dtype=first.dtype)
    start = 0
    for p in parts:
        n = int(p.shape[0])
        out[start:start + n].copy_to_device(as_numba(p))
        start += n
    return out
