"""An independent plain-numpy implementation of the reference test script's scoring formulas (tests only).

Written from the reference's description, not from align3d_rt.scoring_reference: per-branch per-point
map on the grid, Gaussian blur sigma 4 with half-sample reflection and radius int(4*sigma+0.5),
image-level fusion blurred again, max + fused mean global probability; point-level fusion blurred
again for MVTec 3D-AD only. float64 throughout, no scipy.
"""
from __future__ import annotations

import numpy as np


def np_gaussian_blur(image: np.ndarray, sigma: float = 4.0, truncate: float = 4.0) -> np.ndarray:
    """Separable Gaussian (weights exp(-x^2 / 2 sigma^2), normalised) with 'd c b a | a b c d' padding."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=axis)
        out = windows @ kernel
    return out


def np_reference(render: np.ndarray, aligned: np.ndarray, global_probs: np.ndarray, cells: np.ndarray,
                 shape: tuple[int, int], wi: float, wp: float, mvtec: bool, need_blur: bool = True) -> dict:
    """The reference formulas, float64."""
    maps = []
    for values in (render, aligned):
        grid = np.zeros(shape[0] * shape[1])
        grid[cells] = values
        maps.append(np_gaussian_blur(grid.reshape(shape)))
    blur_r, blur_a = maps
    image_map = wi * blur_a + (1 - wi) * blur_r
    if need_blur:
        image_map = np_gaussian_blur(image_map)
    g = np.asarray(global_probs, dtype=np.float64)
    obj = image_map.max() + wi * g[:, 1].mean() + (1 - wi) * g[:, 0].mean()
    point_map = wp * blur_a + (1 - wp) * blur_r
    if mvtec:
        point_map = np_gaussian_blur(point_map)
    return {"object": obj, "image_map": image_map, "point_map": point_map, "points": point_map.ravel()[cells]}
