"""Reference-exact scoring (``--scoring reference``): the post-processing of Align3D-AD's test script.

Our default rules live in ``align3d_rt.scoring``; this module states the reference's, for users who
want its numbers from the same per-point scores (docs/runtime-spec.md, section 12):

1. Per branch, the per-point abnormal probabilities go onto the 336x336 grid (organized clouds: at
   each point's cell, other cells 0; unorganized clouds: the N = side*side points reshaped in point
   order, the reference's Real3D-AD quirk) and are blurred with scipy's ``gaussian_filter``
   (sigma 4, its defaults ``mode='reflect'``, ``truncate=4.0``), float32 in and out.
2. Image level: ``M_img = w_i * blur(A) + (1 - w_i) * blur(R)``, blurred once more (the reference's
   ``need_blur``, on by default); object score = ``max(M_img) + (w_i * mean_v(gA) + (1 - w_i) * mean_v(gR))``
   with the global probabilities gA/gR averaged over the views per branch first.
3. Point level: ``M_pt = w_p * blur(A) + (1 - w_p) * blur(R)``, blurred once more for MVTec 3D-AD only.
   P-R/P-P are computed over every cell of ``M_pt`` (organized) or over its cells in point order
   (unorganized). Each point's reference score is ``M_pt`` at its cell.

numpy + scipy only; it sits just above ``scoring`` (it reuses ``points_to_grid`` and the blur).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from align3d_rt.scoring import ALIGNED, BLUR_SIGMA, RENDER, blur_grid, points_to_grid

SCORING_MODES = ("ours", "reference")
REFERENCE_WEIGHT = 0.5          # the reference's default image- and point-level weights
SECOND_BLUR_DATASETS = ("mvtec3d",)  # the reference blurs its fused point map again for MVTec 3D-AD only


class ReferenceScoringError(ValueError):
    """A cloud reference mode cannot score (unorganized and not a square number of points)."""


@dataclass(frozen=True)
class ReferenceSettings:
    """The reference's knobs: image-/point-level fusion weights of the aligned branch, blur sigma,
    the second blur of the image-level map (``need_blur``, default on)."""

    image_weight: float = REFERENCE_WEIGHT
    point_weight: float = REFERENCE_WEIGHT
    sigma: float = BLUR_SIGMA
    blur_image_map: bool = True

    def __post_init__(self) -> None:
        for name in ("image_weight", "point_weight"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value}: must be in [0, 1]")
        if not float(self.sigma) > 0.0:
            raise ValueError(f"sigma {self.sigma}: must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "reference", "image_level_weight": float(self.image_weight),
                "point_level_weight": float(self.point_weight), "sigma": float(self.sigma),
                "blur_image_map_again": bool(self.blur_image_map),
                "blur_point_map_again_for": list(SECOND_BLUR_DATASETS),
                "unorganized_clouds": "reshaped in point order to side x side (side = sqrt(N)) before blurring"}


@dataclass
class ReferenceScores:
    """Reference-mode results of one cloud."""

    object_score: float
    image_map: np.ndarray   # (H,W) float32, the map whose max enters the object score
    point_map: np.ndarray   # (H,W) float32, the map P-R/P-P are computed on
    point_scores: np.ndarray  # (N,) float32, point_map at each point's cell
    organized: bool


def grid_layout(num_points: int, grid_index: np.ndarray | None,
                grid_shape: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int], bool]:
    """(flat cell of each point, grid shape, organized?) for a cloud.

    Organized clouds use their grid; unorganized ones the reference's reshape in point order, which
    needs N = side * side (Real3D-AD is resampled to 112,896 = 336 * 336 points)."""
    if grid_index is not None and grid_shape is not None:
        return np.asarray(grid_index, dtype=np.int64).ravel(), (int(grid_shape[0]), int(grid_shape[1])), True
    side = math.isqrt(int(num_points))
    if side < 1 or side * side != num_points:
        raise ReferenceScoringError(
            f"reference scoring reshapes an unorganized cloud to side x side in point order, but {num_points} "
            f"points is not a square number (Real3D-AD clouds are resampled to 112,896 = 336^2; pass --dataset real3d)")
    return np.arange(num_points, dtype=np.int64), (side, side), False


def branch_map(values: np.ndarray, cells: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """One branch's per-point values on the grid, blurred (float32)."""
    return blur_grid(points_to_grid(np.asarray(values, dtype=np.float32), cells, shape), sigma)


def reference_scores(point_scores: np.ndarray, global_probs: np.ndarray, grid_index: np.ndarray | None,
                     grid_shape: tuple[int, int] | None, settings: ReferenceSettings,
                     dataset: str = "") -> ReferenceScores:
    """The reference's scores of one cloud from our per-point (render, aligned[, fused]) scores (N,>=2)
    and per-view global probabilities (V,2) [view, branch]."""
    pts = np.asarray(point_scores, dtype=np.float32)
    cells, shape, organized = grid_layout(int(pts.shape[0]), grid_index, grid_shape)
    render = branch_map(pts[:, RENDER], cells, shape, settings.sigma)
    aligned = branch_map(pts[:, ALIGNED], cells, shape, settings.sigma)
    wi, wp = float(settings.image_weight), float(settings.point_weight)

    image_map = (wi * aligned + (1.0 - wi) * render).astype(np.float32)
    if settings.blur_image_map:
        image_map = blur_grid(image_map, settings.sigma)
    g = np.asarray(global_probs, dtype=np.float32)
    g_render = np.float32(g[:, RENDER].mean(dtype=np.float32))
    g_aligned = np.float32(g[:, ALIGNED].mean(dtype=np.float32))
    g_fused = np.float32(np.float32(wi * g_aligned) + np.float32((1.0 - wi) * g_render))
    object_score = float(np.float32(image_map.max() + g_fused))

    point_map = (wp * aligned + (1.0 - wp) * render).astype(np.float32)
    if dataset in SECOND_BLUR_DATASETS:
        point_map = blur_grid(point_map, settings.sigma)
    return ReferenceScores(object_score=object_score, image_map=image_map, point_map=point_map,
                           point_scores=point_map.ravel()[cells].astype(np.float32), organized=organized)
