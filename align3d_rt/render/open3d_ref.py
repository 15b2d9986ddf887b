"""The reference look: Open3D's legacy Visualizer (offscreen; EGL when headless), imported lazily.

Per view: the cloud rotated about its centre, Open3D normals (hybrid search), every point gray, a
fresh default view (add_geometry resets the camera to fit the cloud), the float screen buffer at the
reference window, bicubic downsize to S. Correspondences project with the camera Open3D reports
(``convert_to_pinhole_camera_parameters``) and use the same z-buffer rule as the splat renderer.
One hidden window per (process, window size) is reused: creating windows is slow.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from align3d_rt.errors import BackendUnavailable, import_backend
from align3d_rt.render.camera import PinholeCamera, rotate_about_centre
from align3d_rt.render.views import RenderSettings

_VISUALIZERS: dict[int, Any] = {}
_LOCK = threading.Lock()


def _visualizer(window: int) -> Any:
    import open3d as o3d

    vis = _VISUALIZERS.get(window)
    if vis is None:
        vis = o3d.visualization.Visualizer()
        if not vis.create_window(width=window, height=window, visible=False):
            raise BackendUnavailable("open3d: could not create an offscreen window (no display or EGL)")
        _VISUALIZERS[window] = vis
    return vis


def _capture(vis: Any, pcd: Any, point_size: float, light_on: bool, background: tuple[float, float, float],
             size: int) -> tuple[np.ndarray, PinholeCamera]:
    from PIL import Image

    vis.clear_geometries()
    vis.add_geometry(pcd, reset_bounding_box=True)
    vis.reset_view_point(True)  # a reused window keeps the old box in its union: refit as a fresh window would
    opt = vis.get_render_option()
    opt.point_size = float(point_size)
    opt.light_on = light_on
    opt.background_color = np.asarray(background, dtype=np.float64)
    vis.poll_events()
    vis.update_renderer()
    buf = np.asarray(vis.capture_screen_float_buffer(do_render=True))
    params = vis.get_view_control().convert_to_pinhole_camera_parameters()
    cam = PinholeCamera(np.asarray(params.intrinsic.intrinsic_matrix, dtype=np.float64),
                        np.asarray(params.extrinsic, dtype=np.float64), int(params.intrinsic.width))
    img = Image.fromarray(np.clip(buf * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC)), cam


def render_open3d(points: np.ndarray, rots: np.ndarray, settings: RenderSettings, colors: np.ndarray | None = None,
                  labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Render with Open3D; returns pixels, visible (no fallback), images, rgb, gt like `render_splat`."""
    o3d = import_backend("open3d", "open3d", "use renderer 'splat'")
    from align3d_rt.render.splat import allocate_outputs, zbuffer_visible

    size, v_count, n = settings.image_size, rots.shape[0], points.shape[0]
    out = allocate_outputs(v_count, n, size, colors is not None, labels is not None)
    base = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    base.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=settings.normal_radius,
                                                               max_nn=settings.normal_max_nn))
    normals = np.asarray(base.normals)
    gray = np.full((n, 3), settings.gray, dtype=np.float64)
    with _LOCK:
        vis = _visualizer(settings.window)
        for v in range(v_count):
            rotated = rotate_about_centre(points, rots[v])
            pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rotated))
            pcd.normals = o3d.utility.Vector3dVector(normals @ rots[v].T)
            pcd.colors = o3d.utility.Vector3dVector(gray)
            out["images"][v], cam = _capture(vis, pcd, settings.point_size, True, (1.0, 1.0, 1.0), size)
            pix, depth = cam.pixels(rotated, size)
            out["pixels"][v] = pix
            out["visible"][v] = zbuffer_visible(pix, depth, size)
            if colors is not None:
                pcd.colors = o3d.utility.Vector3dVector(np.asarray(colors, dtype=np.float64))
                out["rgb"][v], _ = _capture(vis, pcd, settings.point_size, False, (1.0, 1.0, 1.0), size)
            if labels is not None:
                lab = (np.asarray(labels) != 0).astype(np.float64)
                pcd.colors = o3d.utility.Vector3dVector(np.repeat(lab[:, None], 3, axis=1))
                mask, _ = _capture(vis, pcd, settings.point_size, False, (0.0, 0.0, 0.0), size)
                out["gt"][v] = np.where(mask[..., 0] > 127, 255, 0).astype(np.uint8)
        vis.clear_geometries()
    return out
