"""Writing inference results: per-point scores (.npy), heat-coloured clouds (.ply) and view pictures (.png).

Every file is written atomically. open3d and matplotlib are imported inside the functions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from align3d_rt.io_utils import atomic_path, save_npy_atomic
from align3d_rt.scoring import upsample_map

HEAT_CMAP = "jet"


def heat_colors(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """(N,) scores -> (N,3) float RGB in [0,1] on the jet colormap (range: given or the values' own)."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    lo = float(vmin) if vmin is not None else (float(v.min()) if v.size else 0.0)
    hi = float(vmax) if vmax is not None else (float(v.max()) if v.size else 1.0)
    norm = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return colormaps[HEAT_CMAP](np.clip(norm, 0.0, 1.0))[:, :3]


def object_only(heat: np.ndarray, image: np.ndarray) -> np.ma.MaskedArray:
    """The heat map masked to the object's pixels (the white render background stays uncoloured)."""
    return np.ma.masked_where(np.all(image >= 255, axis=-1), heat)


def save_point_scores(path: str | Path, point_scores: np.ndarray) -> None:
    """(N,3) float32 (render, aligned, fused) scores as .npy."""
    save_npy_atomic(path, np.asarray(point_scores, dtype=np.float32))


def save_heat_ply(path: str | Path, points: np.ndarray, scores: np.ndarray) -> None:
    """Write the cloud as a .ply coloured by its scores (Open3D)."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64))
    cloud.colors = o3d.utility.Vector3dVector(heat_colors(scores))
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(Path(tmp), cloud, write_ascii=False):
            raise OSError(f"{path}: Open3D could not write the point cloud")


def save_view_overlay(
    path: str | Path,
    images: np.ndarray,
    maps: np.ndarray,
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.5,
    gt_masks: np.ndarray | None = None,
) -> None:
    """One PNG: every rendered view (V,S,S,3) with its (V,G,G) anomaly map over it (shared colour
    scale); with gt_masks (V,S,S) the ground-truth outline is drawn in white."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = int(images.shape[0])
    size = int(images.shape[1])
    ups = np.stack([upsample_map(m, size) for m in maps]) if n else np.zeros((0, size, size), np.float32)
    lo = float(ups.min()) if vmin is None else vmin
    hi = float(ups.max()) if vmax is None else vmax
    cols = min(n, 5) or 1
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(2.2 * cols, 2.2 * rows + (0.4 if title else 0.0)), dpi=100)
    FigureCanvasAgg(fig)
    im = None
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i])
            im = ax.imshow(object_only(ups[i], images[i]), cmap=HEAT_CMAP, alpha=alpha, vmin=lo,
                           vmax=hi if hi > lo else lo + 1e-6)
            if gt_masks is not None and gt_masks[i].any():
                ax.contour(gt_masks[i] > 0, levels=[0.5], colors="white", linewidths=0.8)
            ax.set_title(f"view {i}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.6, fraction=0.03)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
