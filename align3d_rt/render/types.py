"""The result of rendering one cloud into its views."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from align3d_rt.render.views import RenderSettings


@dataclass
class RenderResult:
    """V views of one cloud of N points at image size S.

    images     (V,S,S,3) uint8 gray-shaded renders (white background).
    pixels     (V,N,2) int32 pixel of every point, (x = column, y = row), in [0, S-1].
    visible    (V,N) bool: z-buffer winner of its pixel (one per pixel), never-visible fallback applied.
    rgb_images (V,S,S,3) uint8 renders with the points' own colours, or None.
    gt_masks   (V,S,S) uint8 {0,255}: anomalous points white on black, or None.
    settings   the RenderSettings used.
    """

    images: np.ndarray
    pixels: np.ndarray
    visible: np.ndarray
    rgb_images: np.ndarray | None
    gt_masks: np.ndarray | None
    settings: RenderSettings

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])
