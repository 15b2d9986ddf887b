"""Pictures of evaluation examples: per-sample view overlays and a contact sheet (matplotlib, atomic)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align3d_rt.io_utils import atomic_path


@dataclass
class Example:
    """What a picture of one scored sample needs (kept only for the few chosen examples)."""

    sample_id: str
    category: str
    is_anomalous: bool
    object_score: float
    images: np.ndarray            # (V,S,S,3) uint8 renders
    maps: np.ndarray              # (V,G,G) fused patch maps
    gt_masks: np.ndarray | None   # (V,S,S) uint8 per-view ground truth, or None

    @property
    def label(self) -> str:
        return "anomalous" if self.is_anomalous else "good"

    def best_view(self) -> int:
        """The view to show alone: the one with most ground truth, else the highest map peak."""
        if self.gt_masks is not None and self.gt_masks.any():
            return int(np.argmax(self.gt_masks.reshape(len(self.gt_masks), -1).sum(1)))
        return int(np.argmax(self.maps.reshape(len(self.maps), -1).max(1)))


def _file_name(ex: Example) -> str:
    return ex.sample_id.replace("/", "__") + ".png"


def save_example(out_dir: str | Path, ex: Example, vmin: float | None = None, vmax: float | None = None) -> Path:
    """All views of one sample with its fused map over them (ground-truth outline in white)."""
    from align3d_rt.eval.outputs import save_view_overlay

    path = Path(out_dir) / _file_name(ex)
    save_view_overlay(path, ex.images, ex.maps, title=f"{ex.sample_id} ({ex.label})  score {ex.object_score:.3f}",
                      vmin=vmin, vmax=vmax, gt_masks=ex.gt_masks)
    return path


def save_contact_sheet(path: str | Path, examples: Sequence[Example], cols: int = 4) -> Path | None:
    """One tile per example (its best view, map over it, GT outline); shared colour scale."""
    if not examples:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from align3d_rt.eval.outputs import HEAT_CMAP, object_only
    from align3d_rt.scoring import upsample_map

    size = int(examples[0].images.shape[1])
    tiles = []
    for ex in examples:
        v = ex.best_view()
        tiles.append((ex, v, upsample_map(ex.maps[v], size)))
    lo = min(float(t[2].min()) for t in tiles)
    hi = max(float(t[2].max()) for t in tiles)
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    fig = Figure(figsize=(2.4 * cols, 2.5 * rows), dpi=100)
    FigureCanvasAgg(fig)
    im = None
    for i, (ex, v, up) in enumerate(tiles):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        ax.imshow(ex.images[v])
        im = ax.imshow(object_only(up, ex.images[v]), cmap=HEAT_CMAP, alpha=0.5, vmin=lo,
                       vmax=hi if hi > lo else lo + 1e-6)
        if ex.gt_masks is not None and ex.gt_masks[v].any():
            ax.contour(ex.gt_masks[v] > 0, levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(f"{ex.category} {ex.label}\nscore {ex.object_score:.3f} (view {v})", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.6, fraction=0.03)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
