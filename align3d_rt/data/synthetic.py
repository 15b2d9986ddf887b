"""Synthetic datasets in the real on-disk layouts, deterministic by seed.

- ``generate_mvtec_layout``: MVTec 3D-AD layout (xyz tiff float32 HxWx3 in metres, rgb png, gt png
  with class ids) with several object shapes on a tilted background plane, scanner dropouts
  (zeros), NaN cells, a stray debris blob (removed by the DBSCAN step) and five defect kinds.
- ``generate_real3d_layout``: Real3D-AD layout (.pcd + gt .txt), see ``synthetic_real3d``.
- ``mvtec_from_real_masks``: a 'tire' category whose anomaly regions, rgb and gt are the real
  MVTec 3D-AD tire files, see ``synthetic_tire``.

Every sample draws from its own generator seeded by (seed, category, split, label, index), so a
sample does not change when other categories or counts are requested.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from align3d_rt.data import synthetic_shapes as shapes
from align3d_rt.data.synthetic_real3d import generate_real3d_layout
from align3d_rt.data.synthetic_tire import mvtec_from_real_masks

__all__ = ["generate_mvtec_layout", "generate_real3d_layout", "mvtec_from_real_masks", "render_mvtec_sample",
           "DEFAULT_CATEGORIES", "DEFECTS", "write_mvtec_sample"]

DEFAULT_CATEGORIES = ("dome", "ring", "box", "wave", "cylinder")
DEFECTS = tuple(shapes.DEFECT_IDS)
DEFAULT_SIZE = (180, 240)
PLANE_DEPTH = 0.30


FRAME_HEIGHT_M = 0.108  # every scan's rows span 10.8 cm: the ~9 cm object fills most of the frame, as in MVTec 3D-AD


def pixel_size_for(size: tuple[int, int]) -> float:
    """Metres per pixel for a scan of ``size`` (H, W): finer scans sample the same scene more densely."""
    return FRAME_HEIGHT_M / int(size[0])


def render_mvtec_sample(category: str, defect: str | None, size: tuple[int, int],
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic organized scan: (xyz float32 HxWx3, rgb uint8 HxWx3, gt uint8 HxW class ids)."""
    h_px, w_px = size
    pixel = pixel_size_for(size)
    x, y = shapes.grid_coords(h_px, w_px, rng, pixel)
    height = shapes.shape_height(category, x, y, rng)
    gt = np.zeros(size, np.uint8)
    missing = np.zeros(size, bool)
    recolor = np.zeros(size, bool)
    if defect is not None:
        result = shapes.apply_defect(defect, height, x, y, rng, pixel)
        height, missing, recolor = result.height, result.missing, result.recolor
        gt[result.region] = shapes.DEFECT_IDS[defect]
    height = height + _debris(x, y, height, rng)
    tilt = rng.uniform(-0.12, 0.12, size=2)
    z = PLANE_DEPTH + tilt[0] * x + tilt[1] * y - height + rng.normal(0.0, 1e-4, size=size)
    albedo = np.empty(size + (3,))
    albedo[:] = (60, 60, 66)
    albedo[height > 0] = shapes.SHAPE_COLORS[category]
    albedo[recolor] = (35, 55, 35)
    rgb = shapes.shade_rgb(z, pixel, albedo, rng)
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32)
    shapes.add_dropouts(xyz, missing, rng, object_mask=height > 0)
    return xyz, rgb, gt


def _debris(x: np.ndarray, y: np.ndarray, height: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small loose blob on the background, clear of the object and the image border (DBSCAN drops it)."""
    from scipy import ndimage

    h_px, w_px = x.shape
    far = ndimage.distance_transform_edt(height <= 0) > 20
    far[:25], far[-25:], far[:, :25], far[:, -25:] = False, False, False, False
    spots = np.argwhere(far)
    if spots.size == 0:
        return np.zeros_like(height)
    r, c = spots[rng.integers(len(spots))]
    d2 = (x - x[r, c]) ** 2 + (y - y[r, c]) ** 2
    return np.where(d2 < 0.004 ** 2, 0.008, 0.0)


def write_mvtec_sample(folder: Path, name: str, xyz: np.ndarray, rgb: np.ndarray, gt: np.ndarray | None) -> None:
    """Write xyz/<name>.tiff, rgb/<name>.png and (when given) gt/<name>.png atomically."""
    import tifffile

    from align3d_rt.io_utils import atomic_path, save_png_atomic

    with atomic_path(folder / "xyz" / f"{name}.tiff") as tmp:
        tifffile.imwrite(tmp, xyz)
    save_png_atomic(folder / "rgb" / f"{name}.png", rgb)
    if gt is not None:
        save_png_atomic(folder / "gt" / f"{name}.png", gt)


def _write_category_meta(cat_dir: Path, size: tuple[int, int]) -> None:
    from align3d_rt.io_utils import write_json_atomic

    ids = {str(v): k for k, v in shapes.DEFECT_IDS.items()} | {"0": "good"}
    write_json_atomic(cat_dir / "class_ids.json", ids)
    write_json_atomic(cat_dir / "calibration" / "camera_parameters.json", {
        "camera_type": "synthetic_orthographic", "pixel_size_m": pixel_size_for(size),
        "image_width": size[1], "image_height": size[0], "plane_depth_m": PLANE_DEPTH})


def generate_mvtec_layout(root: str | os.PathLike[str], categories: list[str] | tuple[str, ...] | None = None,
                          n_train: int = 2, n_test_good: int = 2, n_per_defect: int = 1,
                          size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0, n_validation: int = 1,
                          defects: list[str] | tuple[str, ...] | None = None) -> Path:
    """Write a synthetic dataset in the MVTec 3D-AD layout under ``root`` and return ``root``.

    categories: shapes from DEFAULT_CATEGORIES (all by default). size: (H, W) of every scan.
    defects: defect kinds from DEFECTS (all by default), one test/<defect>/ folder each.
    """
    root = Path(root)
    cats = list(categories) if categories else list(DEFAULT_CATEGORIES)
    kinds = list(defects) if defects else list(DEFECTS)
    for name in cats:
        if name not in shapes.SHAPE_COLORS:
            raise ValueError(f"unknown synthetic category {name!r}; known: {', '.join(DEFAULT_CATEGORIES)}")
    for kind in kinds:
        if kind not in shapes.DEFECT_IDS:
            raise ValueError(f"unknown defect {kind!r}; known: {', '.join(DEFECTS)}")
    size = (int(size[0]), int(size[1]))
    for cat in cats:
        cat_dir = root / cat
        plan: list[tuple[str, str, int, bool]] = [("train", "good", n_train, False),
                                                  ("validation", "good", n_validation, False),
                                                  ("test", "good", n_test_good, True)]
        plan += [("test", kind, n_per_defect, True) for kind in kinds]
        for split, label, count, with_gt in plan:
            for i in range(count):
                rng = shapes.sample_rng(seed, cat, split, label, i)
                xyz, rgb, gt = render_mvtec_sample(cat, None if label == "good" else label, size, rng)
                write_mvtec_sample(cat_dir / split / label, f"{i:03d}", xyz, rgb, gt if with_gt else None)
        _write_category_meta(cat_dir, size)
    return root
