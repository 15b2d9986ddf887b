"""Visibility-masked back-projection of per-view patch probability maps onto points (CPU, numba).

Reference formulation (what the kernel equals, without ever building the SxS maps):
each map (G,G) is bilinearly upsampled to SxS exactly like
``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``, the value at the
point's pixel (x = column, y = row) is gathered, and the point's score is the mean over the views
where it is visible. Points visible in no view get 0. Fused = w * aligned + (1 - w) * render.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

from align3d_rt.kernels import _point
from align3d_rt.scoring import bilinear_tables

if TYPE_CHECKING:  # bound (compiled for this backend) by _point.bind() below; the names, for the linters
    from align3d_rt.kernels._point import bilinear_pair, write_scores

_point.bind(globals(), njit(cache=True))

__all__ = ["backproject", "check_inputs"]


def check_inputs(maps: np.ndarray, pixels: np.ndarray, visible: np.ndarray,
                 image_size: int, fusion_weight: float) -> tuple[int, int, int, int]:
    """Validate shapes/dtypes shared by the CPU and CUDA paths; return (B, V, N, G)."""
    if maps.ndim != 5 or maps.shape[2] != 2 or maps.shape[3] != maps.shape[4]:
        raise ValueError(f"maps must be (B,V,2,G,G), got {tuple(maps.shape)}")
    b, v, _, g, _ = maps.shape
    if pixels.ndim != 4 or tuple(pixels.shape[:2]) != (b, v) or pixels.shape[3] != 2:
        raise ValueError(f"pixels must be (B,V,N,2) with B={b}, V={v}, got {tuple(pixels.shape)}")
    n = pixels.shape[2]
    if tuple(visible.shape) != (b, v, n):
        raise ValueError(f"visible must be (B,V,N)=({b},{v},{n}), got {tuple(visible.shape)}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not 0.0 <= float(fusion_weight) <= 1.0:
        raise ValueError(f"fusion_weight must be in [0,1], got {fusion_weight}")
    return b, v, n, g


@njit(cache=True, parallel=True, nogil=True)
def _backproject_kernel(maps, pixels, visible, i0, i1, lam1, weight, out, bad):  # pragma: no cover - jitted
    """One iteration per (sample, point); ``bad[k]`` flags a visible pixel outside the image."""
    b_, v_, _, _, _ = maps.shape
    size = i0.shape[0]
    n_ = pixels.shape[2]
    total = b_ * n_
    for k in prange(total):
        b = k // n_
        n = k - b * n_
        acc0 = 0.0
        acc1 = 0.0
        count = 0
        for v in range(v_):
            if not visible[b, v, n]:
                continue
            x = pixels[b, v, n, 0]
            y = pixels[b, v, n, 1]
            if x < 0 or y < 0 or x >= size or y >= size:
                bad[k] = True
                continue
            r, a = bilinear_pair(
                maps, b, v, x, y, i0, i1, lam1)
            acc0 += r
            acc1 += a
            count += 1
        write_scores(out, b, n, acc0, acc1, count, weight)


def backproject(maps: np.ndarray, pixels: np.ndarray, visible: np.ndarray,
                image_size: int = 336, fusion_weight: float = 0.5) -> np.ndarray:
    """Back-project per-view probability maps onto points and fuse the two branches.

    maps (B,V,2,G,G) float32 [branch 0 = render, 1 = aligned], pixels (B,V,N,2) int32 (x=col,
    y=row), visible (B,V,N) bool -> (B,N,3) float32 (render, aligned, fused). Non-contiguous or
    other-dtype inputs are converted. Raises ValueError on bad shapes or visible pixels outside
    [0, image_size-1].
    """
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    pixels = np.ascontiguousarray(pixels, dtype=np.int32)
    visible = np.ascontiguousarray(visible, dtype=np.bool_)
    b, v, n, g = check_inputs(maps, pixels, visible, image_size, fusion_weight)
    i0, i1, lam1 = bilinear_tables(g, int(image_size))
    out = np.empty((b, n, 3), dtype=np.float32)
    bad = np.zeros(b * n, dtype=np.bool_)
    if b * n:
        _backproject_kernel(maps, pixels, visible, i0, i1, lam1, float(fusion_weight), out, bad)
    if bad.any():
        raise ValueError(f"pixels of visible points must lie in [0, {image_size - 1}]")
    return out
