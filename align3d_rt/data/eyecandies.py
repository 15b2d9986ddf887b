"""Eyecandies: depth.png + info_depth.yaml + pose.txt -> xyz grid -> 336x336 PointCloudSample.

Choices (documented):
- Depth in metres = min + value/65535 * (max - min), with info_depth.yaml ``normalization: {min, max}``;
  a depth value of 0 is treated as "no measurement".
- Camera: focal 711.11 px, principal point at the image centre (W/2, H/2). A pixel (u, v) with depth
  d is the camera point (d (u - W/2)/f, d (v - H/2)/f, d), mapped to world coordinates with
  inverse(pose) (pose.txt holds the 4x4 matrix used as extrinsic in the dataset authors' example:
  world = inv(K4 @ pose) applied to (u, v, 1, 1/d), times d).
- Colours from image_5.png (chosen: the fully lit image; any of image_0..5 can be requested).
- Organized-grid treatment as MVTec without plane removal and DBSCAN (the renders are clean):
  the 512x512 grid is nearest-resized to 336x336 (already square, no padding).
- Labels: mask.png > 0 when it exists; missing mask -> all 0 for good samples, an error for
  anomalous ones (metadata.yaml ``anomalous: 1``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from align3d_rt import errors
from align3d_rt.data import grid as gridlib
from align3d_rt.data.sample import PointCloudSample

FOCAL_LENGTH = 711.11
COLOR_IMAGE = 5
SPLIT_DIRS = {"train": "train", "validation": "val", "test": "test_public"}


def sample_files(depth_path: Path, color_image: int = COLOR_IMAGE) -> dict[str, Path]:
    """Paths of one sample's items from its ``<id>_depth.png``."""
    prefix = depth_path.name[: -len("depth.png")]
    folder = depth_path.parent
    return {"depth": depth_path, "info": folder / f"{prefix}info_depth.yaml", "pose": folder / f"{prefix}pose.txt",
            "rgb": folder / f"{prefix}image_{color_image}.png", "mask": folder / f"{prefix}mask.png",
            "metadata": folder / f"{prefix}metadata.yaml"}


def read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise errors.input_error(path, "file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except Exception as err:  # noqa: BLE001 - any unreadable file is one input-error line
        raise errors.input_error(path, f"unreadable yaml ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise errors.input_error(path, "yaml must hold a mapping")
    return data


def is_anomalous(metadata_path: Path) -> bool:
    """metadata.yaml ``anomalous`` flag; a missing file means good (train/val)."""
    if not metadata_path.is_file():
        return False
    return bool(int(read_yaml(metadata_path).get("anomalous", 0)))


def depth_metres(depth_path: Path, info_path: Path) -> np.ndarray:
    """(H,W) float64 depth in metres; 0 where the png holds 0."""
    from PIL import Image

    if not depth_path.is_file():
        raise errors.input_error(depth_path, "depth image not found")
    norm = read_yaml(info_path).get("normalization")
    if not isinstance(norm, dict) or "min" not in norm or "max" not in norm:
        raise errors.input_error(info_path, "needs 'normalization: {min, max}'")
    try:
        with Image.open(depth_path) as im:
            raw = np.asarray(im)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for broken images: one input-error line
        raise errors.input_error(depth_path, f"unreadable depth image ({type(err).__name__})") from None
    if raw.ndim != 2:
        raise errors.input_error(depth_path, f"depth image must be single-channel 16-bit, got shape {raw.shape}")
    lo, hi = float(norm["min"]), float(norm["max"])
    depth = lo + raw.astype(np.float64) / 65535.0 * (hi - lo)
    return np.where(raw > 0, depth, 0.0)


def depth_to_xyz(depth: np.ndarray, pose: np.ndarray, focal: float = FOCAL_LENGTH) -> np.ndarray:
    """(H,W,3) float32 world points; cells with depth 0 stay 0."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    cam = np.stack([depth * (u - w / 2.0) / focal, depth * (v - h / 2.0) / focal, depth, np.ones_like(depth)], axis=-1)
    world = cam @ np.linalg.inv(pose).T
    xyz = world[..., :3].astype(np.float32)
    xyz[depth <= 0] = 0.0
    return xyz


def read_pose(path: Path) -> np.ndarray:
    if not path.is_file():
        raise errors.input_error(path, "pose file not found")
    try:
        pose = np.loadtxt(path, dtype=np.float64)
    except ValueError:
        raise errors.input_error(path, "pose must be a 4x4 matrix of numbers") from None
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise errors.input_error(path, f"pose must be a finite 4x4 matrix, got shape {pose.shape}")
    return pose


def _read_rgb_like(path: Path, shape: tuple[int, int], kind: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if kind == "rgb" else im)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for broken images: one input-error line
        raise errors.input_error(path, f"unreadable {kind} image ({type(err).__name__})") from None
    if arr.shape[:2] != shape:
        raise errors.input_error(path, f"{kind} image shape {arr.shape[:2]} differs from depth {shape}")
    return arr


def load_eyecandies_sample(depth_path: str | os.PathLike[str], *, category: str = "", split: str = "",
                           label_name: str = "", dataset: str = "eyecandies",
                           color_image: int = COLOR_IMAGE) -> PointCloudSample:
    """Load one Eyecandies sample given its ``<id>_depth.png``."""
    from align3d_rt.data.mvtec3d import grid_to_sample

    files = sample_files(Path(depth_path), color_image)
    depth = depth_metres(files["depth"], files["info"])
    xyz = depth_to_xyz(depth, read_pose(files["pose"]))
    if not gridlib.valid_mask(xyz).any():
        raise errors.input_error(files["depth"], "point cloud has no valid point (all depth values are 0)")
    shape = depth.shape
    rows, cols = gridlib.pad_resize_index(shape[0], shape[1], pad=False)
    grid = gridlib.gather(xyz, rows, cols)
    if not files["rgb"].is_file():
        raise errors.input_error(files["rgb"], "colour image not found")
    colors = gridlib.gather(_read_rgb_like(files["rgb"], shape, "rgb"), rows, cols)
    anomalous = is_anomalous(files["metadata"])
    if files["mask"].is_file():
        mask = gridlib.labels_from_mask(_read_rgb_like(files["mask"], shape, "mask"))
        labels = gridlib.gather(mask, rows, cols)
    elif anomalous:
        raise errors.input_error(files["mask"], "mask missing for an anomalous sample")
    else:
        labels = np.zeros(grid.shape[:2], np.uint8)
    label = label_name or ("anomalous" if anomalous else "good")
    return grid_to_sample(grid, colors, labels, category=category, split=split, label_name=label,
                          source=str(files["depth"]), dataset=dataset,
                          meta={"original_shape": shape, "color_image": color_image})
