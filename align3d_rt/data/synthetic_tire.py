"""An MVTec-layout 'tire' category built on the REAL MVTec 3D-AD tire masks and images.

The shared sample (../shared/data/mvtec3d_tire_sample/tire) holds the real gt masks of all 112 test
samples (good 25, contamination 28, cut 27, hole 27, combined 5; 600 wide x 800 high, class ids
253/254/255) and one real rgb per folder, but no xyz. Here the xyz is generated: a tire-like tread
surface (a rounded profile along the rows, a sidewall step along the columns, tread grooves) on a
tilted background plane, and every real defect region becomes a geometric defect of its class:
hole (253) a deep depression whose core has no points, cut (254) a groove, contamination (255) a
raised blob, any other id a dent. gt and rgb are copied byte for byte from the real files; where a
folder has fewer rgb images than masks its first rgb is reused (the real sample ships one per
folder), so colours are real but do not show the generated defect.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from align3d_rt import errors
from align3d_rt.data import synthetic_shapes as shapes

TIRE_PIXEL_SIZE = 0.0015  # metres per pixel; coarser than the real scanner to keep DBSCAN cheap
#: class id -> height change (metres; negative = into the surface)
CLASS_AMPLITUDE = {253: -0.009, 254: -0.005, 255: 0.004}
DEFAULT_AMPLITUDE = -0.004


def _tire_root(real_root: Path) -> Path:
    for cand in (real_root, real_root / "tire"):
        if (cand / "test").is_dir():
            return cand
    raise errors.input_error(real_root, "not an MVTec 3D-AD tire folder (no test/ inside)")


def tire_height(shape: tuple[int, int], rng: np.random.Generator, pixel: float) -> np.ndarray:
    """Height map (metres) of a tire tread seen from above, covering the real masks' area."""
    from scipy import ndimage

    h_px, w_px = shape
    rows, cols = np.mgrid[0:h_px, 0:w_px].astype(np.float64)
    r0, c0 = h_px / 2 + rng.uniform(-8, 8), w_px / 2 + rng.uniform(-6, 6)
    half_rows, half_cols = 0.32 * h_px, 0.32 * w_px
    v = (rows - r0) / half_rows
    profile = 0.055 * np.sqrt(np.clip(1.0 - v ** 2, 0.0, None))
    profile += 0.006 * np.clip(1.0 - ((cols - c0) / half_cols) ** 2, 0.0, None)  # crowned tread
    inside = (np.abs(cols - c0) < half_cols) & (np.abs(v) < 1.0)
    period_r, period_c = 44.0, 52.0
    shift = np.where(((rows - r0) // period_r) % 2 == 0, 0.0, period_c / 2)
    grooves = (np.abs(((rows - r0) % period_r) - period_r / 2) < 3) | \
              (np.abs(((cols - c0 + shift) % period_c) - period_c / 2) < 3)
    groove_depth = ndimage.gaussian_filter(grooves.astype(np.float64), 1.0) * 0.003
    height = np.where(inside, profile + 0.004 - groove_depth, 0.0)
    return np.where(height > 0, height, 0.0)


def apply_mask_defects(height: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new height, missing cells) with each class region of ``mask`` turned into geometry."""
    from scipy import ndimage

    delta = np.zeros_like(height)
    missing = np.zeros(height.shape, bool)
    for cid in np.unique(mask[mask > 0]):
        region = mask == cid
        amp = CLASS_AMPLITUDE.get(int(cid), DEFAULT_AMPLITUDE)
        delta += amp * np.clip(ndimage.gaussian_filter(region.astype(np.float64), 1.0) * 1.5, 0.0, 1.0)
        if int(cid) == 253:
            missing |= ndimage.binary_erosion(region, iterations=3)
    obj = height > 0
    return np.where(obj, np.maximum(height + delta, 0.0), 0.0), missing & obj


def _tire_xyz(height: np.ndarray, missing: np.ndarray, rng: np.random.Generator, pixel: float) -> np.ndarray:
    h_px, w_px = height.shape
    x = (np.arange(w_px) - (w_px - 1) / 2) * pixel
    y = (np.arange(h_px) - (h_px - 1) / 2) * pixel
    xx, yy = np.meshgrid(x, y)
    tilt = rng.uniform(-0.08, 0.08, size=2)
    z = 0.45 + tilt[0] * xx + tilt[1] * yy - height + rng.normal(0.0, 1e-4, size=height.shape)
    xyz = np.stack([xx, yy, z], axis=-1).astype(np.float32)
    shapes.add_dropouts(xyz, missing, rng, object_mask=height > 0)
    return xyz


def _real_files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


def mvtec_from_real_masks(real_root: str | os.PathLike[str], out_root: str | os.PathLike[str], seed: int = 0,
                          max_per_label: int | None = None, n_train: int = 2, n_validation: int = 1,
                          category: str = "tire", pixel: float = TIRE_PIXEL_SIZE) -> Path:
    """Write ``out_root/<category>`` in the MVTec 3D-AD layout from the real tire masks; return ``out_root``.

    ``real_root`` is the real tire folder (or its parent). Every real test mask becomes one sample
    (at most ``max_per_label`` per label folder); train/validation get generated good samples with
    the real train/validation rgb. An xyz tiff is 600x800x3 float32 (5.8 MB): all 112 test samples
    take ~650 MB.
    """
    from align3d_rt.io_utils import write_bytes_atomic, write_json_atomic

    src = _tire_root(Path(real_root))
    out = Path(out_root) / category
    labels = sorted(p.name for p in (src / "test").iterdir() if p.is_dir())
    if not labels:
        raise errors.input_error(src / "test", "no label folders")
    shape: tuple[int, int] | None = None
    for label in labels:
        masks = _real_files(src / "test" / label / "gt", "*.png")
        rgbs = _real_files(src / "test" / label / "rgb", "*.png")
        if not masks or not rgbs:
            raise errors.input_error(src / "test" / label, "needs gt/*.png and at least one rgb/*.png")
        for mask_path in masks[:max_per_label]:
            mask = _read_mask(mask_path)
            shape = mask.shape
            rng = shapes.sample_rng(seed, category, "test", label, mask_path.stem)
            height, missing = apply_mask_defects(tire_height(mask.shape, rng, pixel), mask)
            xyz = _tire_xyz(height, missing, rng, pixel)
            rgb_path = src / "test" / label / "rgb" / mask_path.name
            _write_copied(out / "test" / label, mask_path.stem, xyz, rgb_path if rgb_path.is_file() else rgbs[0],
                          mask_path)
    assert shape is not None
    for split, count in (("train", n_train), ("validation", n_validation)):
        rgbs = _real_files(src / split / "good" / "rgb", "*.png") or _real_files(src / "test" / "good" / "rgb", "*.png")
        for i in range(count):
            rng = shapes.sample_rng(seed, category, split, "good", i)
            xyz = _tire_xyz(tire_height(shape, rng, pixel), np.zeros(shape, bool), rng, pixel)
            _write_copied(out / split / "good", f"{i:03d}", xyz, rgbs[i % len(rgbs)], None)
    ids = src / "class_ids.json"
    if ids.is_file():
        write_bytes_atomic(out / "class_ids.json", ids.read_bytes())
    write_json_atomic(out / "calibration" / "camera_parameters.json", {
        "camera_type": "synthetic_orthographic", "pixel_size_m": pixel, "image_width": shape[1],
        "image_height": shape[0], "note": "xyz generated; rgb and gt are real MVTec 3D-AD tire files"})
    return Path(out_root)


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            mask = np.asarray(im)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for broken images: one input-error line
        raise errors.input_error(path, f"unreadable gt mask ({type(err).__name__})") from None
    return mask.max(axis=2) if mask.ndim == 3 else mask


def _write_copied(folder: Path, name: str, xyz: np.ndarray, rgb_src: Path, gt_src: Path | None) -> None:
    """xyz written fresh; rgb (and gt) copied byte for byte from the real files."""
    import tifffile

    from align3d_rt.io_utils import atomic_path, write_bytes_atomic

    with atomic_path(folder / "xyz" / f"{name}.tiff") as tmp:
        tifffile.imwrite(tmp, xyz)
    write_bytes_atomic(folder / "rgb" / f"{name}.png", rgb_src.read_bytes())
    if gt_src is not None:
        write_bytes_atomic(folder / "gt" / f"{name}.png", gt_src.read_bytes())
