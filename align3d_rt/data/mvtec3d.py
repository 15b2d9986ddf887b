"""MVTec 3D-AD: organized xyz tiff -> preprocessed 336x336 grid (cached) -> PointCloudSample.

Preprocessing (DESIGN.md, after BTF/M3DM): RANSAC plane fit (threshold 0.004, 50 points per
hypothesis, 1000 iterations; our seeded, bit-reproducible ``plane_ransac`` since PREPROCESS_VERSION 2,
Open3D's ``segment_plane`` before) on the valid points of the 10-pixel image border; points within
0.005 of that plane are zeroed; the largest DBSCAN cluster (eps 0.006, min 30 points, exact
predicate: ``dbscan_grid``) is kept; the grid is zero-padded to a square (sides rounded up to a
multiple of 100) and nearest-resized to 336x336. Padding adds only empty cells, so DBSCAN runs on
the unpadded grid and padding + resizing is a single index lookup shared with rgb and gt.
A cell is invalid when it is non-finite or all-zero. With fewer than 50 valid border points there is
no background to fit and the plane step is skipped. The result depends on the input alone (not on
thread counts or library versions); the C++ inspector reproduces it bit for bit (spec §4.2).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from align3d_rt import errors
from align3d_rt.data import grid as gridlib
from align3d_rt.data.sample import PointCloudSample

PREPROCESS_VERSION = 2  # 2: own seeded RANSAC + exact DBSCAN for every scan (1: Open3D)
BORDER = 10
PLANE_FIT_THRESHOLD = 0.004
PLANE_RANSAC_N = 50
PLANE_ITERATIONS = 1000
PLANE_REMOVE_DISTANCE = 0.005
DBSCAN_EPS = 0.006
DBSCAN_MIN_POINTS = 30
MAX_COORDINATE = 1000.0  # metres; a valid cell beyond it is refused (spec §4.2)

#: counters for tests and profiling: how often the grid was computed vs. read from the cache
STATS = {"computed": 0, "cache_hits": 0}


def read_xyz_tiff(path: str | os.PathLike[str]) -> np.ndarray:
    """Read and validate an organized xyz tiff: (H,W,3) float32 with at least one valid point."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise errors.input_error(path, "xyz tiff not found")
    from align3d_rt.data.point_files import tiff_magic_problem, tiff_size_problem  # before any allocation

    if (problem := tiff_magic_problem(path) or tiff_size_problem(path)) is not None:
        raise errors.input_error(path, problem)
    try:
        xyz = tifffile.imread(path)
    except Exception as err:  # noqa: BLE001 - tifffile raises many types for broken files
        raise errors.input_error(path, f"unreadable tiff ({type(err).__name__}: {err})") from None
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise errors.input_error(path, f"xyz tiff must be HxWx3, got shape {xyz.shape}")
    if not np.issubdtype(xyz.dtype, np.floating):
        raise errors.input_error(path, f"xyz tiff must hold floats (metres), got {xyz.dtype}")
    xyz = xyz.astype(np.float32, copy=False)
    if not gridlib.valid_mask(xyz).any():
        raise errors.input_error(path, "point cloud has no valid point (all zero or NaN)")
    return xyz


def _border_points(xyz: np.ndarray, valid: np.ndarray) -> np.ndarray:
    band = np.zeros(valid.shape, bool)
    band[:BORDER], band[-BORDER:], band[:, :BORDER], band[:, -BORDER:] = True, True, True, True
    return xyz[band & valid].astype(np.float64)


def remove_plane(xyz: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Updated validity mask with the background plane (fitted on the border) removed (spec §4.2 step 2)."""
    from align3d_rt.data.plane_ransac import fit_plane

    border = _border_points(xyz, valid)
    plane = fit_plane(border, PLANE_FIT_THRESHOLD, PLANE_RANSAC_N, PLANE_ITERATIONS)
    return valid if plane is None else remove_plane_cells(xyz, valid, plane)


def remove_plane_cells(xyz: np.ndarray, valid: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """``valid`` without the cells closer than PLANE_REMOVE_DISTANCE to ``plane`` (a,b,c,d), in f64:
    ``|((a·x + b·y) + c·z) + d| / max(sqrt((a·a + b·b) + c·c), 1e-12)``."""
    a, b, c, d = (float(v) for v in plane)
    pts = xyz[valid].astype(np.float64)
    norm = max(float(np.sqrt((a * a + b * b) + c * c)), 1e-12)
    dist = np.abs(((a * pts[:, 0] + b * pts[:, 1]) + c * pts[:, 2]) + d) / norm
    out = valid.copy()
    out[valid] = dist >= PLANE_REMOVE_DISTANCE
    return out


def remove_plane_open3d(xyz: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The previous route (PREPROCESS_VERSION 1), kept for comparison tests: Open3D's multi-threaded
    ``segment_plane`` after ``o3d.utility.random.seed(0)``; not reproducible across runs."""
    import open3d as o3d

    border = _border_points(xyz, valid)
    if border.shape[0] < PLANE_RANSAC_N:
        return valid
    o3d.utility.random.seed(0)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(border))
    plane, _ = cloud.segment_plane(distance_threshold=PLANE_FIT_THRESHOLD, ransac_n=PLANE_RANSAC_N,
                                   num_iterations=PLANE_ITERATIONS)
    return remove_plane_cells(xyz, valid, np.asarray(plane, np.float64))


def largest_cluster(xyz: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Validity mask keeping only the largest DBSCAN cluster (noise never wins), by ``dbscan_grid``'s exact
    labels for every scan (bench/bench_dbscan.py compares it with Open3D)."""
    from align3d_rt.data.dbscan_grid import largest_cluster_grid

    return largest_cluster_grid(xyz, valid, DBSCAN_EPS, DBSCAN_MIN_POINTS)


def largest_cluster_open3d(xyz: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The previous route for sparse scans, kept as a reference: Open3D ``cluster_dbscan``, largest cluster kept."""
    import open3d as o3d

    from align3d_rt.data.dbscan_grid import largest_label_mask

    pts = xyz[valid].astype(np.float64)
    if pts.shape[0] == 0:
        return valid
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    labels = np.asarray(cloud.cluster_dbscan(eps=DBSCAN_EPS, min_points=DBSCAN_MIN_POINTS, print_progress=False))
    return largest_label_mask(valid, labels)


def preprocess_xyz(xyz: np.ndarray, source: str | os.PathLike[str] = "<array>") -> np.ndarray:
    """DESIGN.md MVTec 3D-AD preprocessing of an (H,W,3) grid -> (336,336,3) float32 (invalid = 0).

    ``source`` names the data in error messages. Not cached: see ``preprocessed_grid`` for files.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 3 or xyz.shape[2] != 3 or not np.issubdtype(xyz.dtype, np.floating):
        raise errors.input_error(source, f"xyz must be an HxWx3 float array, got {xyz.dtype} {xyz.shape}")
    valid = gridlib.valid_mask(xyz)
    if not valid.any():
        raise errors.input_error(source, "point cloud has no valid point (all zero or NaN)")
    if (np.abs(xyz[valid]) > MAX_COORDINATE).any():  # the DBSCAN voxel keys assume a metre-scale scan
        raise errors.input_error(source, "xyz values beyond +-1000 m: not an organized scan in metres")
    valid = remove_plane(xyz, valid)
    valid = largest_cluster(xyz, valid)
    if not valid.any():
        raise errors.input_error(source, "no object left after background-plane removal and DBSCAN")
    clean = np.where(valid[..., None], xyz, 0).astype(np.float32)
    rows, cols = gridlib.pad_resize_index(*xyz.shape[:2])
    return gridlib.gather(clean, rows, cols)


def _cache_file(path: Path) -> Path:
    from align3d_rt.io_utils import sha256_json
    from align3d_rt.paths import cache_dir

    st = path.stat()
    key = sha256_json({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                       "version": PREPROCESS_VERSION, "grid": gridlib.GRID_SIZE})
    return cache_dir("preprocessed") / f"{key[:32]}.npz"


def _read_cache(file: Path) -> tuple[np.ndarray, tuple[int, int]] | None:
    try:
        with np.load(file, allow_pickle=False) as data:
            grid, shape = data["grid"], data["shape"]
    except Exception:  # noqa: BLE001 - missing, truncated or corrupt cache entries are recomputed
        return None
    size = gridlib.GRID_SIZE
    if grid.shape != (size, size, 3) or grid.dtype != np.float32 or shape.shape != (2,):
        return None
    return grid, (int(shape[0]), int(shape[1]))


def preprocessed_grid(path: str | os.PathLike[str], use_cache: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
    """(336,336,3) preprocessed grid of an xyz tiff and the tiff's (H,W); cached on disk.

    The cache key is the file's absolute path, size, mtime and PREPROCESS_VERSION; entries are
    written atomically and unreadable ones are recomputed.
    """
    from align3d_rt.io_utils import atomic_path

    path = Path(path)
    if not path.is_file():
        raise errors.input_error(path, "xyz tiff not found")
    file = _cache_file(path) if use_cache else None
    if file is not None:
        hit = _read_cache(file)
        if hit is not None:
            STATS["cache_hits"] += 1
            return hit
    xyz = read_xyz_tiff(path)
    grid = preprocess_xyz(xyz, source=path)
    STATS["computed"] += 1
    if file is not None:
        with atomic_path(file) as tmp:
            np.savez(tmp, grid=grid, shape=np.array(xyz.shape[:2], np.int64))
    return grid, (int(xyz.shape[0]), int(xyz.shape[1]))


def _read_image(path: Path, kind: str, shape: tuple[int, int], mode: str) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise errors.input_error(path, f"{kind} image not found")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert(mode) if mode == "RGB" else im)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for broken images: one input-error line
        raise errors.input_error(path, f"unreadable {kind} image ({type(err).__name__})") from None
    if arr.shape[:2] != shape:
        raise errors.input_error(path, f"{kind} image is {arr.shape[1]}x{arr.shape[0]}, xyz is {shape[1]}x{shape[0]}")
    return arr


def grid_to_sample(grid: np.ndarray, colors_grid: np.ndarray | None, labels_grid: np.ndarray | None,
                   **fields: object) -> PointCloudSample:
    """PointCloudSample from an organized grid: points are the valid cells, row-major."""
    valid = gridlib.valid_mask(grid)
    index = np.flatnonzero(valid).astype(np.int64)
    flat = grid.reshape(-1, 3)
    colors = None if colors_grid is None else colors_grid.reshape(-1, 3)[index].astype(np.float32) / 255.0
    labels = None if labels_grid is None else labels_grid.reshape(-1)[index].astype(np.uint8)
    return PointCloudSample(points=np.ascontiguousarray(flat[index], np.float32), colors=colors,
                            point_labels=labels, grid_shape=(grid.shape[0], grid.shape[1]),
                            grid_index=index, **fields)  # type: ignore[arg-type]


def load_mvtec_sample(xyz_path: str | os.PathLike[str], rgb_path: str | os.PathLike[str] | None,
                      gt_path: str | os.PathLike[str] | None, *, category: str = "", split: str = "",
                      label_name: str = "", dataset: str = "mvtec3d") -> PointCloudSample:
    """Load one MVTec 3D-AD sample; rgb is required when given, gt is required for defect samples."""
    xyz_path = Path(xyz_path)
    grid, shape = preprocessed_grid(xyz_path)
    rows, cols = gridlib.pad_resize_index(*shape)
    colors = None
    if rgb_path is not None:
        colors = gridlib.gather(_read_image(Path(rgb_path), "rgb", shape, "RGB"), rows, cols)
    labels = np.zeros(grid.shape[:2], np.uint8)
    gt = Path(gt_path) if gt_path is not None else None
    if gt is not None and gt.is_file():
        labels = gridlib.gather(gridlib.labels_from_mask(_read_image(gt, "gt", shape, "L")), rows, cols)
    elif label_name not in ("good", ""):
        raise errors.input_error(gt if gt is not None else xyz_path,
                                 f"gt mask missing for defect sample '{label_name}'")
    return grid_to_sample(grid, colors, labels, category=category, split=split, label_name=label_name,
                          source=str(xyz_path), dataset=dataset,
                          meta={"original_shape": shape, "preprocess_version": PREPROCESS_VERSION})
