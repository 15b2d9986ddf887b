"""Exact nearest-other-location squared distances of a point cloud on a uniform grid (CPU, numba).

For point i, ``d2[i]`` = min over points j at another location of ``((xi-xj)^2 + (yi-yj)^2) + (zi-zj)^2``
(f64, each operation separately, as ``runtime/decisions.py:_d2``); ``first[i]``: no j < i shares i's
location (its exact coordinates by value: the f64 difference of two finite values is 0 only when they
are equal, and the square of a nonzero difference of f32 values never underflows in f64).

The points are binned into cubic cells of side ``c`` (dense cell table, points sorted by cell). Point i
scans the cube of cells of half-width k = 1, 2, ... around its own and stops once its best distance is
below the distance to any unscanned cell, ``k * c`` (less a 1e-6 relative margin, far above the
rounding of the binning): the result is the exact minimum, not an estimate. A point with nothing found
within ``MAX_RING`` cells (an isolated outlier) is marked with -1 and ``brute_force`` finishes it.
Serial on purpose: one call per part, and the threads of a parallel loop cost more than they save on
a few shared cores (measured: 42 ms serial vs 60 ms with 2 threads for a whole decide).
"""
from __future__ import annotations

import numpy as np
from numba import njit

MAX_RING = 3  # cube half-width searched before a point is left to brute_force
MARGIN = 1.0 - 1e-6


@njit(cache=True, nogil=True)
def bounds(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Per-axis minimum and maximum of the rows of ``pts`` (N >= 1)."""
    lo = pts[0].copy()
    hi = pts[0].copy()
    for i in range(1, pts.shape[0]):
        for a in range(3):
            v = pts[i, a]
            if v < lo[a]:
                lo[a] = v
            elif v > hi[a]:
                hi[a] = v
    return lo, hi


@njit(cache=True, nogil=True)
def grid_cells(pts: np.ndarray, axes: np.ndarray, lo: np.ndarray, c: float,
               dims: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Linear cell index of each point: ``(cx * dy + cy) * dz + cz`` over the coordinate columns ``axes``
    (``lo``, ``dims``: per cell axis), each clamped to the grid."""
    n = pts.shape[0]
    cell = np.empty(n, np.int64)
    for i in range(n):
        key = 0
        for a in range(3):
            q = int((pts[i, axes[a]] - lo[a]) / c)
            if q < 0:
                q = 0
            elif q >= dims[a]:
                q = dims[a] - 1
            key = key * dims[a] + q
        cell[i] = key
    return cell


@njit(cache=True, nogil=True)
def counting_sort(cell: np.ndarray, start: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Point indices ordered by cell, ascending index inside a cell (``start``: the cells' offsets)."""
    fill = start[:-1].copy()
    order = np.empty(cell.shape[0], np.int64)
    for i in range(cell.shape[0]):
        order[fill[cell[i]]] = i
        fill[cell[i]] += 1
    return order


@njit(cache=True, nogil=True)
def grid_nearest(pts: np.ndarray, cell: np.ndarray, order: np.ndarray, start: np.ndarray, dims: np.ndarray,
                 c: float) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """``(d2, first)`` of every point (d2 = -1: nothing within MAX_RING cells); ``order`` sorts the points
    by ``cell``, ``start[k]:start[k+1]`` are the positions in ``order`` of cell k's points."""
    n = pts.shape[0]
    d2 = np.empty(n, np.float64)
    first = np.ones(n, np.bool_)
    sp = np.empty((n, 3), np.float64)  # the points in cell order: neighbours are close in memory
    for s in range(n):
        sp[s, 0] = pts[order[s], 0]
        sp[s, 1] = pts[order[s], 1]
        sp[s, 2] = pts[order[s], 2]
    dx_, dy_, dz_ = dims[0], dims[1], dims[2]
    for t in range(n):
        i = order[t]
        xi, yi, zi = sp[t, 0], sp[t, 1], sp[t, 2]
        key = cell[i]
        cz = key % dz_
        cy = (key // dz_) % dy_
        cx = key // (dz_ * dy_)
        best = np.inf
        dup_before = False
        done = False
        for k in range(1, MAX_RING + 1):
            x0, x1 = max(cx - k, 0), min(cx + k, dx_ - 1)
            y0, y1 = max(cy - k, 0), min(cy + k, dy_ - 1)
            z0, z1 = max(cz - k, 0), min(cz + k, dz_ - 1)
            for gx in range(x0, x1 + 1):
                for gy in range(y0, y1 + 1):
                    row = (gx * dy_ + gy) * dz_
                    for s in range(start[row + z0], start[row + z1 + 1]):
                        ex = xi - sp[s, 0]
                        ey = yi - sp[s, 1]
                        ez = zi - sp[s, 2]
                        v = (ex * ex + ey * ey) + ez * ez
                        if v == 0.0:
                            if s < t:  # same cell, stable order: an earlier index at this location
                                dup_before = True
                        elif v < best:
                            best = v
            bound = k * c * MARGIN
            if best <= bound * bound:
                done = True
                break
        d2[i] = best if done else -1.0
        first[i] = not dup_before
    return d2, first


@njit(cache=True, nogil=True)
def brute_force(pts: np.ndarray, which: np.ndarray, d2: np.ndarray) -> None:  # pragma: no cover
    """``d2[i]`` for each i in ``which`` by a scan of all points (inf when all share i's location)."""
    n = pts.shape[0]
    for t in range(which.shape[0]):
        i = which[t]
        xi, yi, zi = pts[i, 0], pts[i, 1], pts[i, 2]
        best = np.inf
        for j in range(n):
            ex = xi - pts[j, 0]
            ey = yi - pts[j, 1]
            ez = zi - pts[j, 2]
            v = (ex * ex + ey * ey) + ez * ez
            if v != 0.0 and v < best:
                best = v
        d2[i] = best


def nearest_other_d2(pts: np.ndarray, max_cells_per_point: float = 16.0,
                     max_brute: int = 2000, min_occupancy: float = 2.0,
                     max_per_cell: int = 256) -> tuple[np.ndarray, np.ndarray] | None:
    """``(d2, first)`` of ``pts`` ((N, 3) finite f64, N >= 2, not all at one location) or None when the
    grid does not fit (too many cells, a crowded cell, too many isolated points): the caller then uses a k-d tree."""
    n = len(pts)
    # cell axes by decreasing extent: a cell's neighbours along the thinnest axis are contiguous
    lo3, hi3 = bounds(pts)
    ext3 = hi3 - lo3
    axes = np.argsort(-ext3, kind="stable")
    lo, ext = lo3[axes], ext3[axes]
    # about 2-3 points per cell on a scanned surface (cell ~ 1.7 x the spacing of a regular grid)
    c = 1.7 * (np.sqrt(ext[0] * ext[1] / n) if ext[1] > 0 else ext[0] / n)
    if not c > 0:
        return None
    cell = start = None
    for _ in range(12):
        dims_f = np.floor(ext / c) + 1.0  # in f64 first: a far outlier must not overflow int64
        cells = float(np.prod(dims_f))
        if not cells <= max_cells_per_point * n + 1024:
            c *= 2.0
            continue
        dims = dims_f.astype(np.int64)
        cell = grid_cells(pts, axes, lo, float(c), dims)
        counts = np.bincount(cell, minlength=int(cells))
        if n < min_occupancy * np.count_nonzero(counts) and cells > 1:
            c *= 1.5  # sparse cells (a volume, a curved surface): larger ones, fewer rings
            cell = None
            continue
        if counts.max() > max_per_cell:  # a crowded cell (many copies of a point, a far outlier): quadratic
            return None
        start = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=start[1:])
        break
    if cell is None or start is None:
        return None
    order = counting_sort(cell, start)
    d2, first = grid_nearest(pts, cell, order, start, dims, float(c))
    missing = np.flatnonzero(d2 < 0)
    if len(missing) > max_brute:
        return None
    if len(missing):
        brute_force(pts, missing, d2)
    return d2, first
