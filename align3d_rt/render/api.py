"""`render_views`: one entry point for every renderer (splat on CPU or CUDA, open3d reference)."""
from __future__ import annotations

from typing import Any

import numpy as np

from align3d_rt.errors import InputError
from align3d_rt.render.types import RenderResult
from align3d_rt.render.views import RenderSettings
from align3d_rt.scoring import apply_visibility_fallback

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


def _visible_with_fallback(visible: Any, on_device: bool, stream: Any) -> Any:
    """The never-visible fallback; on the device the (V,N) flags make one host round trip."""
    if not on_device:
        return apply_visibility_fallback(visible)
    from numba import cuda

    flags = visible.copy_to_host(stream=stream)
    fixed = apply_visibility_fallback(flags)
    return visible if np.array_equal(fixed, flags) else cuda.to_device(fixed, stream=stream)


def render_views(points: np.ndarray, settings: RenderSettings, colors: np.ndarray | None = None,
                 labels: np.ndarray | None = None, device: str = "cpu", stream: Any = 0,
                 keep_on_device: bool = False) -> RenderResult:
    """Render points (N,3) into settings' views; see RenderResult for the outputs.

    colors (N,3) float in [0,1] adds rgb_images; labels (N,) 0/1 adds gt_masks. device 'cuda' runs
    the splat renderer's numba.cuda kernels (renderer 'splat' only) on ``stream``; with
    ``keep_on_device`` the result holds numba device arrays. The never-visible fallback then runs on
    the host over the (V,N) visibility flags only (one small round trip; images stay on the device).
    """
    if keep_on_device and device != "cuda":
        raise ValueError("keep_on_device needs device='cuda'")
    pts = _check_inputs(points, colors, labels)
    from align3d_rt.render.camera import view_rotations

    rots = view_rotations(settings)
    if settings.renderer == "splat":
        args = (pts, rots, settings.image_size, settings.window, settings.point_size, settings.gray, colors, labels)
        if device == "cuda":
            from align3d_rt.render.splat_cuda import render_splat_cuda

            out = render_splat_cuda(*args, stream=stream, keep_on_device=keep_on_device)
        elif device == "cpu":
            from align3d_rt.render.splat import render_splat

            out = render_splat(*args)
        else:
            raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
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
        visible=_visible_with_fallback(out["visible"], keep_on_device, stream),
        rgb_images=out["rgb"] if colors is not None else None,
        gt_masks=out["gt"] if labels is not None else None,
        settings=settings,
    )
