"""Small synthetic clouds with known geometry for tests, benchmarks and demos (no dataset needed)."""
from __future__ import annotations

import numpy as np


def organized_object(size: int = 336, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An MVTec-like organized cloud after preprocessing: a bagel-shaped height field in metres.

    Returns (points (N,3) float32 valid points only, grid_index (N,) int64 into the size x size grid).
    About 70% of the grid is valid (N ~ 80k at 336); the object spans ~0.08 m, ~1e-4 m noise.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(-0.05, 0.05, size)
    x, y = np.meshgrid(t, t)
    r = np.hypot(x, y)
    ring = np.clip(1.0 - ((r - 0.026) / 0.02) ** 2, 0.0, None)
    z = 0.012 * np.sqrt(ring) + 0.003 * np.sin(x * 200) * np.cos(y * 150) * (ring > 0)
    base = r < 0.05
    z = np.where(base, z, 0.0)
    z = z + rng.normal(0.0, 1e-4, size=z.shape)
    pts = np.stack([x, y, 0.6 - z], axis=-1).reshape(-1, 3)  # the sensor looks along +z: the part rises toward it
    keep = np.flatnonzero(base.ravel())
    return pts[keep].astype(np.float32), keep.astype(np.int64)


def unorganized_cloud(n: int = 112_896, seed: int = 0) -> np.ndarray:
    """A Real3D-AD-like unorganized cloud (N,3) float32: a bumpy closed surface, units of millimetres."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    radius = 20.0 * (1.0 + 0.15 * np.sin(3 * d[:, 0]) * np.cos(4 * d[:, 1]))
    pts = d * radius[:, None] * np.array([1.6, 1.0, 0.7])
    return pts.astype(np.float32)
