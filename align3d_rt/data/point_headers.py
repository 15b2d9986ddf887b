"""The minimum size of a scored cloud, and reading a loose .pcd/.ply/.npy file's points.

The readers (data/pcd_reader.py, data/ply_reader.py, data/npy_points.py) follow the C++ inspector's
rules and messages exactly (docs/runtime-spec.md §4.1); Open3D is not used for the points: it reads
text or short rows as zeros and fills a truncated file's missing points.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from align3d_rt import errors

MIN_POINTS = 64  # fewer valid points (or distinct locations) cannot be rendered meaningfully (runtime-spec §4.1)
_FIRST_ROWS = 4096  # distinct locations are counted in these rows first; the whole cloud only if they hold too few


def count_distinct_locations(points: np.ndarray, enough: int = MIN_POINTS) -> int:
    """Distinct (x, y, z) rows of finite f32 ``points`` (-0.0 equals 0.0), counted exactly below ``enough``;
    any count >= ``enough`` means at least that many."""
    def distinct(rows: np.ndarray) -> int:
        rows = np.ascontiguousarray(rows, np.float32) + np.float32(0.0)  # -0.0 + 0.0 is +0.0: equal values, equal bytes
        return int(np.unique(rows.view(np.dtype((np.void, 12))).ravel()).size)

    first = distinct(points[:_FIRST_ROWS])
    return first if first >= enough or points.shape[0] <= _FIRST_ROWS else distinct(points)


def check_min_points(path: str | Path, points: np.ndarray) -> None:
    """Refuse a cloud with fewer than MIN_POINTS valid points, or with fewer than MIN_POINTS distinct locations
    (a scan whose points all coincide renders as blank views and would get a meaningless score)."""
    n = int(points.shape[0])
    if n < MIN_POINTS:
        raise errors.input_error(path, f"only {n} valid point(s); at least {MIN_POINTS} are needed to render "
                                       f"and score a cloud")
    distinct = count_distinct_locations(points)
    if distinct < MIN_POINTS:
        raise errors.input_error(path, f"only {distinct} distinct point location(s) among {n} valid points; at "
                                       f"least {MIN_POINTS} are needed to render and score a cloud")


def read_points(path: str | os.PathLike[str]) -> np.ndarray:
    """The points of a loose .pcd/.ply (finite rows, all-zero rows kept) or .npy (finite, not all-zero rows)
    as (N,3) f32; refuses what the C++ reader refuses, with the same message."""
    from align3d_rt.data.npy_points import read_npy_points
    from align3d_rt.data.pcd_reader import read_pcd
    from align3d_rt.data.ply_reader import read_ply
    from align3d_rt.data.point_files import fail, read_regular_file, suffix_of

    suffix = suffix_of(path)
    if suffix not in (".pcd", ".ply", ".npy"):
        raise fail(path, f"unsupported point file type '{suffix}' (use .tiff, .pcd, .ply or .npy)")
    data = read_regular_file(path)
    with np.errstate(all="ignore"):  # NaN/inf/out-of-range values are data here: their rows are dropped
        if suffix == ".pcd":
            return read_pcd(path, data)
        if suffix == ".ply":
            return read_ply(path, data)
        arr = read_npy_points(path, data)
    arr = arr[np.isfinite(arr).all(axis=1) & (arr != 0).any(axis=1)]
    if arr.shape[0] == 0:
        raise fail(path, "point cloud has no valid point (all zero or NaN)")
    return np.ascontiguousarray(arr)
