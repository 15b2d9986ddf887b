"""Back-projection + fusion on the GPU (numba.cuda): one thread per point.

Same signature and result as :func:`align3d_rt.kernels.backproject.backproject`. Inputs may be
numpy arrays (result: numpy) or device arrays / any object exposing ``__cuda_array_interface__``,
e.g. torch CUDA tensors (result: a numba device array, shareable without copies).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numba import cuda

from align3d_rt.kernels import _point
from align3d_rt.kernels.backproject import bilinear_tables, check_inputs

if TYPE_CHECKING:  # bound (compiled for this backend) by _point.bind() below; the names, for the linters
    from align3d_rt.kernels._point import bilinear_pair, write_scores

__all__ = ["backproject_cuda"]

_THREADS = 256

_point.bind(globals(), cuda.jit(device=True))


@cuda.jit
def _backproject_cuda_kernel(maps, pixels, visible, i0, i1, lam1, weight, out):  # pragma: no cover
    k = cuda.grid(1)
    n_ = pixels.shape[2]
    total = maps.shape[0] * n_
    if k >= total:
        return
    b = k // n_
    n = k - b * n_
    acc0 = 0.0
    acc1 = 0.0
    count = 0
    for v in range(maps.shape[1]):
        if visible[b, v, n]:
            x = pixels[b, v, n, 0]
            y = pixels[b, v, n, 1]
            r, a = bilinear_pair(
                maps, b, v, x, y, i0, i1, lam1)
            acc0 += r
            acc1 += a
            count += 1
    write_scores(out, b, n, acc0, acc1, count, weight)


def _is_device(array: Any) -> bool:
    """A numba device array or any object exposing ``__cuda_array_interface__`` (torch, cupy)."""
    return bool(cuda.devicearray.is_cuda_ndarray(array) or hasattr(array, "__cuda_array_interface__"))


def _to_device(array: Any, dtype: type, name: str) -> Any:
    """Device view of a CUDA-array-interface object (no copy), or a copy of a host array."""
    if _is_device(array):
        dev = array if cuda.devicearray.is_cuda_ndarray(array) else cuda.as_cuda_array(array)
        if dev.dtype != np.dtype(dtype):
            raise ValueError(f"{name} on the device must be {np.dtype(dtype).name}, got {dev.dtype}")
        return dev
    return cuda.to_device(np.ascontiguousarray(array, dtype=dtype))


def backproject_cuda(maps: Any, pixels: Any, visible: Any, image_size: int = 336,
                     fusion_weight: float = 0.5, stream: Any = 0) -> Any:
    """GPU back-projection: (B,V,2,G,G) maps, (B,V,N,2) int32 pixels, (B,V,N) bool visible ->
    (B,N,3) float32 (render, aligned, fused). numpy in -> numpy out; device in -> device out.

    Device inputs are used in place (torch bool tensors work as ``visible``); pixels of visible
    points must lie in [0, image_size-1] (not re-checked on the device, to avoid a sync).
    """
    on_device = _is_device(maps)
    d_maps = _to_device(maps, np.float32, "maps")
    d_pixels = _to_device(pixels, np.int32, "pixels")
    d_visible = _to_device(visible, np.bool_, "visible")
    b, v, n, g = check_inputs(d_maps, d_pixels, d_visible, image_size, fusion_weight)
    if not on_device:
        host_pixels = np.asarray(pixels)
        host_visible = np.asarray(visible, dtype=bool)
        sel = host_pixels[host_visible]
        if sel.size and (sel.min() < 0 or sel.max() >= image_size):
            raise ValueError(f"pixels of visible points must lie in [0, {image_size - 1}]")
    i0, i1, lam1 = (cuda.to_device(t, stream=stream) for t in bilinear_tables(g, int(image_size)))
    out = cuda.device_array((b, n, 3), dtype=np.float32, stream=stream)
    total = b * n
    if total:
        blocks = (total + _THREADS - 1) // _THREADS
        _backproject_cuda_kernel[blocks, _THREADS, stream](
            d_maps, d_pixels, d_visible, i0, i1, lam1, float(fusion_weight), out)
    if on_device:
        return out
    return out.copy_to_host(stream=stream)
