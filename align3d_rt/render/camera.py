"""View rotations and the Open3D default camera, in numpy (the kernels use `_math.py`).

Every view: flip 180 degrees about X, then the preset's rotation about the cloud's centre; the
camera is Open3D's default view fitted to the rotated cloud's bounding box (see `_math.py`).
Rotating about the centre or the origin gives the same image: the camera follows the bounding box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from align3d_rt.render import _math
from align3d_rt.render.views import RenderSettings


def axis_rotation(axis: str, degrees: float) -> np.ndarray:
    """Right-handed rotation matrix (3,3) float64 about 'x', 'y' or 'z'."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    raise ValueError(f"unknown rotation axis {axis!r}")


FLIP = axis_rotation("x", 180.0)


def view_rotations(settings: RenderSettings) -> np.ndarray:
    """(V,3,3) float64: each view's rotation applied after the 180-degree flip about X."""
    return np.stack([axis_rotation(axis, deg) @ FLIP for axis, deg in settings.views])


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera at the reference window: intrinsic K (3,3) and world-to-camera extrinsic (4,4)."""

    intrinsic: np.ndarray
    extrinsic: np.ndarray
    window: int

    def camera_coords(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return p @ self.extrinsic[:3, :3].T + self.extrinsic[:3, 3]

    def window_coords(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, depth) at the reference window."""
        c = self.camera_coords(points)
        k = self.intrinsic
        return k[0, 0] * c[:, 0] / c[:, 2] + k[0, 2], k[1, 1] * c[:, 1] / c[:, 2] + k[1, 2], c[:, 2]

    def pixels(self, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """((N,2) int32 pixel (x, y) at image size S by the reference rule, (N,) float64 depth)."""
        u, v, z = self.window_coords(points)
        scale = size / self.window
        pix = np.stack([np.floor(u * scale), np.floor(v * scale)], axis=1)
        return np.clip(pix, 0, size - 1).astype(np.int32), z


def default_camera(rotated_points: np.ndarray, window: int) -> PinholeCamera:
    """Open3D's default view of a fresh square window fitted to the cloud's bounding box."""
    p = np.asarray(rotated_points, dtype=np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    centre = 0.5 * (lo + hi)
    dist = _math.ZOOM * float((hi - lo).max()) / _math.TAN_HALF_FOV
    eye = centre + np.array([0.0, 0.0, dist])
    f = window / (2.0 * _math.TAN_HALF_FOV)
    k = np.array([[f, 0, window / 2 - 0.5], [0, f, window / 2 - 0.5], [0, 0, 1]], dtype=np.float64)
    r = np.diag([1.0, -1.0, -1.0])
    e = np.eye(4)
    e[:3, :3] = r
    e[:3, 3] = -r @ eye
    return PinholeCamera(intrinsic=k, extrinsic=e, window=window)


def rotate_about_centre(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate (N,3) points about their mean (what Open3D's ``rotate(R, center=get_center())`` does)."""
    p = np.asarray(points, dtype=np.float64)
    c = p.mean(axis=0)
    return (p - c) @ rotation.T + c
