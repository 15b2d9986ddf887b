"""Real3D-AD: .pcd clouds (+ "x y z label" gt txt) resampled to exactly 112,896 points.

Larger clouds: exact farthest-point sampling (``fps.farthest_point_sampling``, starts at point 0).
Smaller clouds: neighbour interpolation: the missing M points are midpoints between evenly spread
source points and their r-th nearest neighbour (r = 1, 2, ... for each further pass when M > N);
a new point takes its source point's label. Resampling is deterministic.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from align3d_rt import errors
from align3d_rt.data.sample import PointCloudSample

NUM_POINTS = 112_896  # = 336 * 336, the MVTec grid's capacity


def read_point_cloud(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(points (N,3) float32, colors (N,3) float32 or None) of a .pcd/.ply; finite rows only.

    The points come from the checked readers (point_headers.read_points, same rules as the C++
    inspector); Open3D is asked only for the colours of a file whose header declares them."""
    from align3d_rt.data.point_headers import read_points

    path = Path(path)
    points = read_points(path)
    return points, _colors(path, points.shape[0])


def _colors(path: Path, n: int) -> np.ndarray | None:
    """Open3D's colours of the finite rows, when the header names colour fields and the rows agree."""
    head = path.read_bytes()[:4096].lower()
    if not (b"property uchar red" in head or b"property float red" in head or b"rgb" in head):
        return None
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(Path(path), format="auto", print_progress=False)
    if not cloud.has_colors():
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        points = np.asarray(cloud.points, dtype=np.float32)
        keep = np.isfinite(points).all(axis=1)
        colors = np.asarray(cloud.colors, dtype=np.float32)[keep]
    return colors if colors.shape[0] == n else None


def read_gt_txt(path: str | os.PathLike[str], expected_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(points (N,3) float32, labels (N,) uint8) from a Real3D-AD gt file of "x y z label" lines."""
    path = Path(path)
    if not path.is_file():
        raise errors.input_error(path, "gt txt not found")
    try:
        data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise errors.input_error(path, f"malformed gt txt ({str(err).splitlines()[0]})") from None
    if data.shape[1] != 4:
        raise errors.input_error(path, f"gt txt needs 4 columns 'x y z label', found {data.shape[1]}")
    if data.shape[0] == 0:
        raise errors.input_error(path, "gt txt is empty")
    if expected_points is not None and data.shape[0] != expected_points:
        raise errors.input_error(path, f"gt txt has {data.shape[0]} points, the cloud has {expected_points}")
    if not np.isfinite(data).all():
        raise errors.input_error(path, "gt txt holds non-finite values")
    return data[:, :3].astype(np.float32), (data[:, 3] > 0).astype(np.uint8)


def upsample_indices(points: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """(source (M,), neighbour (M,)) index pairs whose midpoints bring N points up to ``target``."""
    from scipy.spatial import cKDTree

    n = points.shape[0]
    extra = target - n
    passes = -(-extra // n)
    k = min(passes + 1, n)
    _, nbr = cKDTree(points).query(points, k=k)
    nbr = np.asarray(nbr).reshape(n, k)
    src_parts, nbr_parts = [], []
    left = extra
    for p in range(passes):
        m = min(left, n)
        src = (np.arange(m) * n) // m
        src_parts.append(src)
        nbr_parts.append(nbr[src, min(p + 1, k - 1)])
        left -= m
    return np.concatenate(src_parts), np.concatenate(nbr_parts)


def resample(points: np.ndarray, labels: np.ndarray | None, colors: np.ndarray | None = None,
             target: int = NUM_POINTS) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Exactly ``target`` points: FPS when larger, midpoint interpolation when smaller; labels follow."""
    from align3d_rt.data.fps import farthest_point_sampling

    n = points.shape[0]
    if n == target:
        return points, labels, colors
    if n > target:
        idx = farthest_point_sampling(points, target)
        return (points[idx], None if labels is None else labels[idx], None if colors is None else colors[idx])
    if n == 1:
        idx = np.zeros(target, np.int64)
        return points[idx], None if labels is None else labels[idx], None if colors is None else colors[idx]
    src, nbr = upsample_indices(points, target)
    new_pts = (0.5 * (points[src].astype(np.float64) + points[nbr])).astype(np.float32)
    out_pts = np.concatenate([points, new_pts])
    out_lab = None if labels is None else np.concatenate([labels, labels[src]])
    out_col = None if colors is None else np.concatenate([colors, 0.5 * (colors[src] + colors[nbr])])
    return out_pts, out_lab, out_col


def parse_label(stem: str) -> str:
    """'123_bulge_cut' -> 'bulge'; '4_template' -> 'good'."""
    parts = stem.split("_")
    if len(parts) < 2 or parts[1] == "template":
        return "good"
    return parts[1]


def load_real3d_sample(pcd_path: str | os.PathLike[str], gt_path: str | os.PathLike[str] | None, *,
                       category: str = "", split: str = "", label_name: str = "", dataset: str = "real3d",
                       num_points: int | None = NUM_POINTS) -> PointCloudSample:
    """Load a Real3D-AD cloud; the gt txt (when present) is the cloud and gives the labels."""
    pcd_path = Path(pcd_path)
    points, colors = read_point_cloud(pcd_path)
    gt = Path(gt_path) if gt_path is not None else None
    if gt is not None and gt.is_file():
        points, labels = read_gt_txt(gt, expected_points=points.shape[0])
        colors = None
    elif label_name not in ("good", ""):
        raise errors.input_error(gt if gt is not None else pcd_path,
                                 f"gt txt missing for anomalous sample '{label_name}'")
    else:
        labels = np.zeros(points.shape[0], np.uint8)
    original = int(points.shape[0])
    point_labels: np.ndarray | None = labels
    if num_points is not None:
        points, point_labels, colors = resample(points, labels, colors, num_points)
    return PointCloudSample(points=np.ascontiguousarray(points, np.float32), colors=colors, point_labels=point_labels,
                            category=category, split=split, label_name=label_name, source=str(pcd_path),
                            dataset=dataset, meta={"original_points": original})
