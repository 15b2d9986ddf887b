"""Deterministic, seeded RANSAC plane fit (docs/runtime-spec.md §4.2 step 2), reproducible bit for bit.

Replaces Open3D's multi-threaded ``segment_plane`` (whose result depends on thread scheduling) with a
fully specified procedure that the C++ inspector reproduces exactly (``cpp/geometry/src/mvtec_preprocess.cpp``):

- random numbers: splitmix64 seeded with 0; draw k (k = 0, 1, ...) is ``mix(seed + (k+1)·0x9E3779B97F4A7C15)``;
- hypothesis t (0..iterations-1) samples ``sample_n`` of the M points without replacement by a partial
  Fisher-Yates shuffle of a fresh identity permutation: for i in 0..n-1, ``j = i + draw[t·n+i] mod (M-i)``,
  swap positions i and j, take position i;
- each hypothesis is the least-squares plane of its sample (``plane_from_points``: Open3D's determinant
  method, sequential f64 sums in sample order); inliers are points with ``|((a·x + b·y) + c·z) + d| < threshold``;
- the best hypothesis has the most inliers (ties: the lowest t; degenerate samples are skipped);
- the result is the least-squares plane of the best hypothesis's inliers (in point order), as Open3D's refit.

Every operation is a separate IEEE f64 operation (numpy ufuncs, no fused multiply-add), in the stated order.
"""
from __future__ import annotations

import numpy as np

SEED = 0
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 32  # hypotheses evaluated per block (memory only; results do not depend on it)


def splitmix64(seed: int, count: int) -> np.ndarray:
    """The first ``count`` outputs of splitmix64 seeded with ``seed`` (uint64, wrapping arithmetic)."""
    k = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + k * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _value_at(p: np.ndarray, pos: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Value at position p of each row's permutation: the latest swap that wrote p, else p itself."""
    if pos.shape[1] == 0:
        return p
    hit = pos == p[:, None]
    last = pos.shape[1] - 1 - np.argmax(hit[:, ::-1], axis=1)
    return np.where(hit.any(axis=1), held[np.arange(p.size), last], p)


def sample_indices(m: int, n: int, iterations: int, seed: int = SEED) -> np.ndarray:
    """(iterations, n) int64: per hypothesis, n distinct indices of 0..m-1 (partial Fisher-Yates, see module)."""
    draws = splitmix64(seed, iterations * n).reshape(iterations, n)
    pos = np.empty((iterations, n), np.int64)   # position swapped at step i (j_i) ...
    held = np.empty((iterations, n), np.int64)  # ... and the value left there
    out = np.empty((iterations, n), np.int64)
    for i in range(n):
        j = i + (draws[:, i] % np.uint64(m - i)).astype(np.int64)
        out[:, i] = _value_at(j, pos[:, :i], held[:, :i])
        held[:, i] = _value_at(np.full(iterations, i, np.int64), pos[:, :i], held[:, :i])
        pos[:, i] = j
    return out


def plane_from_samples(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares planes of point sets (..., n, 3) f64 -> ((..., 4) planes (a,b,c,d), (...) ok mask).

    centroid = sequential sum / n; xx..zz = sequential sums of products of the centred coordinates;
    the normal is the cofactor row of the largest of det_x, det_y, det_z (ties: x before y before z,
    strict comparisons as in Open3D), normalised by sqrt((a·a + b·b) + c·c); d = -((a·cx + b·cy) + c·cz).
    ok is False where that norm is 0 or not finite (the points do not span a plane)."""
    samples = np.asarray(samples, np.float64)
    n = samples.shape[-2]
    x, y, z = samples[..., 0], samples[..., 1], samples[..., 2]
    # np.cumsum (add.accumulate) is a strict left-to-right sum
    cx = np.cumsum(x, axis=-1)[..., -1] / float(n)
    cy = np.cumsum(y, axis=-1)[..., -1] / float(n)
    cz = np.cumsum(z, axis=-1)[..., -1] / float(n)
    rx, ry, rz = x - cx[..., None], y - cy[..., None], z - cz[..., None]

    def total(v: np.ndarray) -> np.ndarray:
        return np.cumsum(v, axis=-1)[..., -1]

    xx, xy, xz = total(rx * rx), total(rx * ry), total(rx * rz)
    yy, yz, zz = total(ry * ry), total(ry * rz), total(rz * rz)
    det_x, det_y, det_z = yy * zz - yz * yz, xx * zz - xz * xz, xx * yy - xy * xy
    use_x = (det_x > det_y) & (det_x > det_z)
    use_y = ~use_x & (det_y > det_z)
    a = np.where(use_x, det_x, np.where(use_y, xz * yz - xy * zz, xy * yz - xz * yy))
    b = np.where(use_x, xz * yz - xy * zz, np.where(use_y, det_y, xy * xz - yz * xx))
    c = np.where(use_x, xy * yz - xz * yy, np.where(use_y, xy * xz - yz * xx, det_z))
    norm = np.sqrt((a * a + b * b) + c * c)
    ok = np.isfinite(norm) & (norm > 0)
    safe = np.where(ok, norm, 1.0)
    a, b, c = a / safe, b / safe, c / safe
    d = -((a * cx + b * cy) + c * cz)
    return np.stack([a, b, c, d], axis=-1), ok


def plane_distance(points: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """|((a·x + b·y) + c·z) + d| for points (M,3) f64 and planes (..., 4) -> (..., M)."""
    a, b, c, d = (plane[..., k, None] for k in range(4))
    return np.abs(((a * points[:, 0] + b * points[:, 1]) + c * points[:, 2]) + d)


def fit_plane(points: np.ndarray, threshold: float, sample_n: int, iterations: int,
              seed: int = SEED) -> np.ndarray | None:
    """The (a,b,c,d) plane of ``points`` (M,3) f64 by the module's RANSAC, or None when M < sample_n or
    no hypothesis spans a plane."""
    points = np.ascontiguousarray(points, np.float64)
    m = points.shape[0]
    if m < sample_n or sample_n < 3:
        return None
    idx = sample_indices(m, sample_n, iterations, seed)
    best_count, best_plane = -1, None
    for start in range(0, iterations, _CHUNK):
        planes, ok = plane_from_samples(points[idx[start: start + _CHUNK]])
        counts = np.where(ok, (plane_distance(points, planes) < threshold).sum(axis=1), -1)
        t = int(np.argmax(counts))  # first maximum: the lowest hypothesis wins ties
        if counts[t] > best_count:
            best_count, best_plane = int(counts[t]), planes[t]
    if best_plane is None or best_count < 0:
        return None
    inliers = points[plane_distance(points, best_plane) < threshold]
    if inliers.shape[0] >= 3:
        refit, ok = plane_from_samples(inliers)
        if ok:
            return refit
    return best_plane
