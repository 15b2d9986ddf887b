"""`render_views`: one entry point for every renderer (splat on CPU or CUDA, open3d reference)."""
from __future__ import annotations

import numpy as np

from align3d_rt.errors import InputError
from align3d_rt.render.types import RenderResult
from align3d_rt.render.views import RenderSettings

RENDERERS = ("splat", "open3d")


def _check_inputs(points: np.ndarray, colors: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
        raise InputError(f"points: expected a non-empty (N,3) array, got shape {pts.shape}")
    if pts.shape[0] >= 2**32 - 1:
        raise InputError(f"points: {pts.shape[0]} points is more than the renderer's 32-bit index allows")
    pts = np.ascontiguousarray(pts, dtype=np.float32)
    if not np.isfinite(pts).all():
        raise InputError("points: NaN or infinite coordinates (pass valid points only)")
    n = pts.shape[0]
    if colors is not None and np.shape(colors) != (n, 3):
        raise InputError(f"colors: expected shape ({n}, 3), got {np.shape(colors)}")
    if labels is not None and np.shape(labels) != (n,):
        raise InputError(f"labels: expected shape ({n},), got {np.shape(labels)}")
    return pts


def apply_visibility_fallback(visible: np.ndarray) -> np.ndarray:
    """A point visible in no view borrows the flags of the index-nearest point visible somewhere.

    Ties (one neighbour on each side at the same index distance) take the lower index. Returns a
    new (V,N) bool array; unchanged when every point is visible or none is.
    """
    seen = visible.any(axis=0)
    if seen.all() or not seen.any():
        return visible.copy()
    donors = np.flatnonzero(seen)
    lost = np.flatnonzero(~seen)
    pos = np.searchsorted(donors, lost)
    below = donors[np.clip(pos - 1, 0, donors.size - 1)]
    above = donors[np.clip(pos, 0, donors.size - 1)]
    use_below = (pos > 0) & ((pos >= donors.size) | (lost - below <= above - lost))
    source = np.where(use_below, below, above)
    out = visible.copy()
    out[:, lost] = visible[:, source]
    return out


def render_views(points: np.ndarray, settings: RenderSettings, colors: np.ndarray | None = None,
                 labels: np.ndarray | None = None, device: str = "cpu") -> RenderResult:
    """Render points (N,3) into settings' views; see RenderResult for the outputs.

    colors (N,3) float in [0,1] adds rgb_images; labels (N,) 0/1 adds gt_masks. device 'cuda' runs
    the splat renderer's numba.cuda kernels (renderer 'splat' only).
    """
    pts = _check_inputs(points, colors, labels)
    from align3d_rt.render.camera import view_rotations

    rots = view_rotations(settings)
    if settings.renderer == "splat":
        if device == "cuda":
            from align3d_rt.render.splat_cuda import render_splat_cuda as run
        elif device == "cpu":
            from align3d_rt.render.splat import render_splat as run
        else:
            raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
        out = run(pts, rots, settings.image_size, settings.window, settings.point_size, settings.gray, colors, labels)
    elif settings.renderer == "open3d":
        if device != "cpu":
            raise ValueError("the open3d renderer runs on the CPU only")
        from align3d_rt.render.open3d_ref import render_open3d

        out = render_open3d(pts, rots, settings, colors, labels)
    else:
        raise ValueError(f"unknown renderer {settings.renderer!r}; known: {', '.join(RENDERERS)}")
    return RenderResult(
        images=out["images"],
        pixels=out["pixels"],
        visible=apply_visibility_fallback(out["visible"]),
        rgb_images=out["rgb"] if colors is not None else None,
        gt_masks=out["gt"] if labels is not None else None,
        settings=settings,
    )
