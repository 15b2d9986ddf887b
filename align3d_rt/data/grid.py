"""Organized-grid helpers: square zero-padding + nearest resize as one index map, grid -> sample."""
from __future__ import annotations

import math

import numpy as np

GRID_SIZE = 336


def valid_mask(xyz: np.ndarray) -> np.ndarray:
    """(H,W) bool: finite and not the all-zero 'no point' marker."""
    finite = np.isfinite(xyz).all(axis=-1)
    nonzero = (xyz != 0).any(axis=-1)
    return finite & nonzero


def square_pad(h: int, w: int) -> tuple[int, int, int]:
    """(side, top, left) of the reference zero-padding: both sides rounded up to a multiple of 100,
    the larger one is the square side, the image is centred (extra pixel at the bottom/right)."""
    side = max(int(math.ceil(h / 100.0)) * 100, int(math.ceil(w / 100.0)) * 100)
    return side, (side - h) // 2, (side - w) // 2


def nearest_source(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output cell for nearest resizing (torch 'nearest': floor(i * in/out))."""
    scale = n_in / n_out
    return np.minimum(np.floor(np.arange(n_out) * scale).astype(np.int64), n_in - 1)


def pad_resize_index(h: int, w: int, size: int = GRID_SIZE, pad: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows (size,) and cols (size,) into the original HxW image, -1 where the cell is padding.

    Equivalent to zero-padding to a square (``pad``) then nearest-resizing to size x size.
    """
    if pad:
        side, top, left = square_pad(h, w)
        rows = nearest_source(side, size) - top
        cols = nearest_source(side, size) - left
    else:
        rows, cols = nearest_source(h, size), nearest_source(w, size)
    rows = np.where((rows >= 0) & (rows < h), rows, -1)
    cols = np.where((cols >= 0) & (cols < w), cols, -1)
    return rows, cols


def gather(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pick image[rows][:, cols] (nearest resize); cells with a -1 index become 0."""
    out = image[np.clip(rows, 0, None)][:, np.clip(cols, 0, None)].copy()
    out[rows < 0] = 0
    out[:, cols < 0] = 0
    return out


def labels_from_mask(mask: np.ndarray) -> np.ndarray:
    """Binary uint8 labels from a class-id mask (HxW or HxWxC): anything > 0 is anomalous."""
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return (mask > 0).astype(np.uint8)
