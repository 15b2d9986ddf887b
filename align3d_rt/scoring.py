"""The scoring rules shared by every path (Python runtime, training, evaluation, kernels).

One module owns each rule; docs/runtime-spec.md states them for other implementations (C++):

- ``bilinear_tables`` / ``upsample_map``: a (G,G) patch map upsampled to (S,S) like PyTorch's
  bilinear ``align_corners=False``.
- ``apply_visibility_fallback``: a point visible in no view borrows the flags of the index-nearest
  point visible somewhere.
- ``fuse``: fused = w * aligned + (1 - w) * render (point scores, view maps, global probabilities).
- ``object_score``: max fused point score + mean over views of the fused global probability.
- ``points_to_grid`` / ``blur_grid``: point scores onto the organized grid, Gaussian blur sigma 4
  (the reference evaluation protocol).

numpy only at import time; it sits below render/ and kernels/, which apply two of these rules
inside their kernels (the numba kernels compile ``fuse`` from this very function).
"""
from __future__ import annotations

from typing import Any

import numpy as np

BLUR_SIGMA = 4.0
BLUR_TRUNCATE = 4.0   # scipy default, used by the reference
BLUR_MODE = "reflect"  # scipy default, used by the reference
RENDER, ALIGNED = 0, 1  # branch order on every branch axis
BRANCH_NAMES = ("render", "aligned")


def fuse(render: Any, aligned: Any, weight: float) -> Any:
    """w * aligned + (1 - w) * render; scalars or arrays (numpy, torch), also compiled by numba."""
    return weight * aligned + (1.0 - weight) * render


def fuse_branches(branches: Any, weight: float, axis: int = 1) -> Any:
    """Fuse an array whose ``axis`` holds the two branches (render, aligned), e.g. view maps (V,2,G,G)."""
    arr = np.asarray(branches)
    return fuse(np.take(arr, RENDER, axis=axis), np.take(arr, ALIGNED, axis=axis), weight)


def object_score(fused_points: np.ndarray, global_probs: np.ndarray, fusion_weight: float) -> float:
    """max(fused point score) + mean over views of the fused global abnormal probability.

    fused_points (N,) float32; global_probs (V,2) float32 [view, branch]. An empty cloud has peak 0.
    """
    g = fuse_branches(np.asarray(global_probs, dtype=np.float32), fusion_weight, axis=1)
    peak = float(np.max(fused_points)) if np.size(fused_points) else 0.0
    return peak + float(np.mean(g))


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


def upsample_map(grid_map: np.ndarray, image_size: int) -> np.ndarray:
    """Bilinear (align_corners=False) upsample of a (G,G) map to (S,S), the rule the back-projection uses."""
    i0, i1, lam = bilinear_tables(int(grid_map.shape[0]), int(image_size))
    m = np.asarray(grid_map, dtype=np.float32)
    rows = m[i0] * (1.0 - lam)[:, None] + m[i1] * lam[:, None]
    return rows[:, i0] * (1.0 - lam)[None, :] + rows[:, i1] * lam[None, :]


def apply_visibility_fallback(visible: np.ndarray) -> np.ndarray:
    """A point visible in no view borrows the flags of the index-nearest point visible somewhere.

    Ties (one neighbour on each side at the same index distance) take the lower index. Returns a
    new (V,N) bool array; unchanged when every point is visible or none is.
    """
    seen = visible.any(axis=0)
    if seen.all() or not seen.any():
        return visible.copy()
    donors = np.flatnonzero(seen)
    lost = np.flatnonzero(~seen)
    pos = np.searchsorted(donors, lost)
    below = donors[np.clip(pos - 1, 0, donors.size - 1)]
    above = donors[np.clip(pos, 0, donors.size - 1)]
    use_below = (pos > 0) & ((pos >= donors.size) | (lost - below <= above - lost))
    source = np.where(use_below, below, above)
    out = visible.copy()
    out[:, lost] = visible[:, source]
    return out


def points_to_grid(scores: np.ndarray, grid_index: np.ndarray, grid_shape: tuple[int, int]) -> np.ndarray:
    """Write per-point values onto the organized (H,W) grid as float32; cells without a point are 0."""
    h, w = (int(grid_shape[0]), int(grid_shape[1]))
    idx = np.asarray(grid_index, dtype=np.int64).ravel()
    vals = np.asarray(scores).ravel()
    if idx.shape != vals.shape:
        raise ValueError(f"points_to_grid: {vals.size} values but {idx.size} grid indices")
    if idx.size and (idx.min() < 0 or idx.max() >= h * w):
        raise ValueError(f"points_to_grid: grid_index outside [0, {h * w - 1}] for grid {h}x{w}")
    grid = np.zeros(h * w, np.float32)
    grid[idx] = vals
    return grid.reshape(h, w)


def blur_grid(score_map: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Gaussian blur as in the reference: ``gaussian_filter(map, sigma)`` with scipy's defaults
    (``mode='reflect'``, ``truncate=4.0``); float32 in -> float32 out."""
    from scipy.ndimage import gaussian_filter

    arr = np.asarray(score_map)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return gaussian_filter(arr, sigma=sigma, mode=BLUR_MODE, truncate=BLUR_TRUNCATE)


SCORING_RULES_VERSION = 1


def scoring_settings(fusion_weight: float) -> dict[str, Any]:
    """The scoring section a bundle manifest records (docs/runtime-spec.md, "Scoring")."""
    return {
        "rules_version": SCORING_RULES_VERSION,
        "branch_order": list(BRANCH_NAMES),
        "fusion_weight": float(fusion_weight),
        "point_score": "mean over visible views of the bilinear map value; fused = w*aligned + (1-w)*render",
        "object_score": "max fused point score + mean over views of the fused global probability",
        "never_visible": "index-nearest visible point's view flags",
        "grid_blur_sigma": BLUR_SIGMA,
    }
