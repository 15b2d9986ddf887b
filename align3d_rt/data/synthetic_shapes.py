"""Height-map objects and geometric defects for the synthetic MVTec-layout generator.

Everything is metric (metres) on an orthographic grid: X, Y are the pixel centres, a height map h
(>= 0, 0 = background) is raised off a tilted background plane toward the camera (Z decreases).
Objects are ~9 cm across and 1.5-2.5 cm high; defects change the geometry by ~3-7 mm (a few % of
the object size) so they show clearly in gray shaded renders.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

PIXEL_SIZE = 0.0006  # default metres per pixel (the MVTec-layout generator derives it from the scan size)

#: defect name -> class id written into the gt masks (real MVTec masks hold ids like 253..255)
DEFECT_IDS = {"bump": 251, "dent": 252, "hole": 253, "crack": 254, "contamination": 255}

#: category -> base RGB colour (0..255)
SHAPE_COLORS = {
    "dome": (205, 140, 70),
    "ring": (170, 110, 60),
    "box": (150, 160, 175),
    "wave": (225, 215, 120),
    "cylinder": (185, 130, 95),
}


@dataclass
class DefectResult:
    height: np.ndarray  # (H,W) new height map
    region: np.ndarray  # (H,W) bool anomalous area (gt)
    missing: np.ndarray  # (H,W) bool cells without a measured point
    recolor: np.ndarray  # (H,W) bool cells whose colour changes (contamination)


def grid_coords(h: int, w: int, rng: np.random.Generator, pixel: float = PIXEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (X, Y) in metres, centred with a small random shift."""
    shift = rng.uniform(-0.004, 0.004, size=2)
    xs = (np.arange(w) - (w - 1) / 2.0) * pixel + shift[0]
    ys = (np.arange(h) - (h - 1) / 2.0) * pixel + shift[1]
    return np.meshgrid(xs, ys)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def shape_height(name: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Height map (metres) of the named object, with a small random size and orientation change."""
    scale = rng.uniform(0.95, 1.05)
    angle = rng.uniform(-np.pi, np.pi)
    u, v = _rotate(x / scale, y / scale, angle)
    if name == "dome":
        radius, height = 0.045, 0.025
        sphere = (radius ** 2 + height ** 2) / (2 * height)
        h = np.sqrt(np.maximum(sphere ** 2 - u ** 2 - v ** 2, 0.0)) - (sphere - height)
    elif name == "ring":
        major, tube = 0.034, 0.016
        r = np.hypot(u, v)
        h = 1.15 * np.sqrt(np.maximum(tube ** 2 - (r - major) ** 2, 0.0))
    elif name == "box":
        q = (np.abs(u / 0.048) ** 6 + np.abs(v / 0.034) ** 6) ** (1 / 6)
        h = 0.017 * np.sqrt(np.clip(1.0 - q ** 10, 0.0, None))
    elif name == "wave":
        q = (np.abs(u / 0.045) ** 6 + np.abs(v / 0.038) ** 6) ** (1 / 6)
        top = 0.016 + 0.0035 * np.sin(2 * np.pi * u / 0.028) * np.cos(2 * np.pi * v / 0.03)
        h = np.where(q < 1.0, top * np.sqrt(np.clip(1.0 - q ** 12, 0.0, None)) ** 0.25, 0.0)
    elif name == "cylinder":
        radius, length = 0.021, 0.1
        h = np.where(np.abs(u) < length / 2, np.sqrt(np.maximum(radius ** 2 - v ** 2, 0.0)), 0.0)
    else:
        raise ValueError(f"unknown synthetic shape {name!r}; known: {sorted(SHAPE_COLORS)}")
    return np.where(h > 0, h * scale, 0.0)


def _defect_centre(height: np.ndarray, rng: np.random.Generator, margin_px: int) -> tuple[int, int]:
    """A random cell on the upper part of the object, away from its silhouette."""
    from scipy import ndimage

    inside = ndimage.binary_erosion(height > 0, iterations=margin_px)
    candidates = np.argwhere(inside & (height >= max(0.55 * height.max(), 0.013)))
    if candidates.size == 0:
        candidates = np.argwhere(height >= 0.8 * height.max())
    r, c = candidates[rng.integers(len(candidates))]
    return int(r), int(c)


def _curve_distance(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rng: np.random.Generator,
                    length: float) -> np.ndarray:
    """Distance of each cell to a slightly bent polyline of the given length through (cx, cy)."""
    theta = rng.uniform(0, np.pi)
    bend = rng.uniform(-8.0, 8.0)
    t = np.linspace(-length / 2, length / 2, 80)
    d, n = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    pts = np.array([cx, cy]) + t[:, None] * d + (bend * t ** 2)[:, None] * n
    dist = np.full(x.shape, np.inf)
    for px, py in pts:
        np.minimum(dist, np.hypot(x - px, y - py), out=dist)
    return dist


def apply_defect(kind: str, height: np.ndarray, x: np.ndarray, y: np.ndarray,
                 rng: np.random.Generator, pixel: float = PIXEL_SIZE) -> DefectResult:
    """Apply one defect of ``kind`` (a key of DEFECT_IDS) at a random spot on the object."""
    obj = height > 0
    r, c = _defect_centre(height, rng, margin_px=int(round(0.008 / pixel)))
    cx, cy = float(x[r, c]), float(y[r, c])
    dist = np.hypot(x - cx, y - cy)
    h = height.copy()
    missing = np.zeros(h.shape, bool)
    recolor = np.zeros(h.shape, bool)
    if kind in ("bump", "dent"):
        sigma = rng.uniform(0.0035, 0.0045)
        amp = rng.uniform(0.0038, 0.0048) * (1 if kind == "bump" else -1)
        h = h + amp * np.exp(-(dist ** 2) / (2 * sigma ** 2))
        region = dist < 2.0 * sigma
    elif kind == "crack":
        width = rng.uniform(0.0011, 0.0014)
        cd = _curve_distance(x, y, cx, cy, rng, length=rng.uniform(0.028, 0.036))
        h = h - 0.0045 * np.clip(1.0 - (cd / width) ** 2, 0.0, None)
        region = cd < 1.3 * width
    elif kind == "hole":
        radius = rng.uniform(0.0045, 0.0055)
        h = np.where(dist < radius, h - 0.007, h)
        missing = dist < 0.65 * radius
        region = dist < radius + pixel
    elif kind == "contamination":
        blob = np.zeros(h.shape)
        for _ in range(3):
            ox, oy = rng.uniform(-0.003, 0.003, size=2)
            s = rng.uniform(0.0018, 0.003)
            blob += np.exp(-((x - cx - ox) ** 2 + (y - cy - oy) ** 2) / (2 * s ** 2))
        blob /= blob.max()
        region = blob > 0.3
        h = h + 0.0035 * np.clip((blob - 0.2) / 0.8, 0.0, None)
        recolor = region
    else:
        raise ValueError(f"unknown defect {kind!r}; known: {sorted(DEFECT_IDS)}")
    return DefectResult(height=np.where(obj, np.maximum(h, 0.0), 0.0), region=region & obj,
                        missing=missing & obj, recolor=recolor & obj)


def shade_rgb(z: np.ndarray, pixel: float, albedo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB image: Lambert shading of the surface z (camera looks along +z) times ``albedo``."""
    gy, gx = np.gradient(z, pixel)
    normal = np.stack([gx, gy, -np.ones_like(z)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    light = np.array([0.35, -0.45, -0.82])
    light /= np.linalg.norm(light)
    lambert = np.clip(normal @ light, 0.0, 1.0)
    image = albedo * (0.3 + 0.7 * lambert)[..., None] + rng.normal(0.0, 4.0, size=albedo.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def sample_rng(seed: int, *parts: str | int) -> np.random.Generator:
    """Independent generator per sample, stable across runs and platforms."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(p).encode()) for p in parts])


def add_dropouts(xyz: np.ndarray, missing: np.ndarray, rng: np.random.Generator,
                 object_mask: np.ndarray | None = None) -> None:
    """Scanner-like gaps in place: ``missing`` cells, sparse random cells and two blobs become zeros;
    a few other cells become NaN. With ``object_mask`` the blobs fall on the background only, so an
    unlabelled gap on the object never looks like a labelled hole."""
    h_px, w_px = missing.shape
    gaps = missing | (rng.random(missing.shape) < 0.002)
    rows, cols = np.mgrid[0:h_px, 0:w_px]
    for _ in range(2):
        r, c = rng.integers(0, h_px), rng.integers(0, w_px)
        blob = (rows - r) ** 2 + (cols - c) ** 2 < rng.integers(4, 16)
        gaps |= blob if object_mask is None else blob & ~object_mask
    xyz[gaps] = 0.0
    nan = (rng.random(missing.shape) < 0.002) & ~gaps
    xyz[nan] = np.nan
