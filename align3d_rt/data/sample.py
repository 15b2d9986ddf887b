"""The one sample type every reader returns and every later stage consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PointCloudSample:
    """A point cloud with optional colours, labels and its organized-grid layout.

    points       (N,3) float32, valid points only (no zeros / NaN rows).
    colors       (N,3) float32 in [0,1] or None (RGB, used only for stage-1 renders).
    point_labels (N,) uint8 0/1 or None (1 = anomalous point).
    grid_shape   (H,W) of the organized grid the points came from (MVTec 3D-AD / Eyecandies), else None.
    grid_index   (N,) int64 flat index of each point in that grid, else None.
    label_name   'good' or the defect type (folder name); '' when unknown (loose files).
    """

    points: np.ndarray
    category: str = ""
    split: str = ""
    label_name: str = ""
    source: str = ""
    dataset: str = ""
    colors: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    grid_shape: tuple[int, int] | None = None
    grid_index: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def is_anomalous(self) -> bool | None:
        """Object label: True/False when known, None for unlabelled loose files."""
        if self.label_name:
            return self.label_name != "good"
        if self.point_labels is not None:
            return bool(self.point_labels.any())
        return None

    @property
    def sample_id(self) -> str:
        """Readable id, e.g. 'tire/test/hole/003'."""
        from pathlib import Path

        stem = Path(self.source).stem if self.source else "sample"
        parts = [p for p in (self.category, self.split, self.label_name, stem) if p]
        return "/".join(parts)
