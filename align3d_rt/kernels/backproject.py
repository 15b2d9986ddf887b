"""Visibility-masked back-projection of per-view patch probability maps onto points (CPU, numba).

Reference formulation (what the kernel equals, without ever building the SxS maps):
each map (G,G) is bilinearly upsampled to SxS exactly like
``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``, the value at the
point's pixel (x = column, y = row) is gathered, and the point's score is the mean over the views
where it is visible. Points visible in no view get 0. Fused = w * aligned + (1 - w) * render.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from align3d_rt.kernels import _point

_bilinear_pair = njit(cache=True)(_point.bilinear_pair)
_write_scores = njit(cache=True)(_point.write_scores)

__all__ = ["backproject", "bilinear_tables", "check_inputs"]


def bilinear_tables(grid_size: int, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per destination coordinate (0..S-1): low source index, high source index, high weight.

    Same rule as PyTorch's ``upsample_bilinear2d`` with ``align_corners=False`` and no explicit
    scale: ``src = (dst + 0.5) * G / S - 0.5``, clamped at 0; ``i0 = floor(src)``,
    ``i1 = min(i0 + 1, G - 1)``, ``lambda1 = src - i0``. The table is the same for rows and
    columns because maps and images are square.
    """
    if grid_size < 1 or image_size < 1:
        raise ValueError(f"grid_size and image_size must be positive, got {grid_size}, {image_size}")
    # PyTorch computes the scale in float32 and the source index as one fused multiply-add
    # rounded once to float32; the float64 product of two float32 values is exact, so this
    # reproduces its coordinates and weights bit for bit.
    scale = np.float64(np.float32(grid_size) / np.float32(image_size))
    dst = np.arange(image_size, dtype=np.float64)
    src = (scale * (dst + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.floor(src).astype(np.int32)
    i1 = np.where(i0 < grid_size - 1, i0 + 1, i0).astype(np.int32)
    lam1 = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam1


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


@njit(cache=True, parallel=True)
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
            r, a = _bilinear_pair(maps, b, v, x, y, i0, i1, lam1)
            acc0 += r
            acc1 += a
            count += 1
        _write_scores(out, b, n, acc0, acc1, count, weight)


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
