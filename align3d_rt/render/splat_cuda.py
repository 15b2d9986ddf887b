"""The splat renderer as numba.cuda kernels: same maths (`_math.py`) and outputs as `splat.py`.

Race-free z-buffers on the GPU: every point does an atomic min of its packed (31-bit depth, 32-bit
index) key into the point z-buffer and into each pixel of its splat, so the nearest point (lowest
index on ties) wins regardless of thread order. Then one thread per pixel resolves visibility and
the position/colour/gt buffers, and one thread per pixel shades (screen-space normals).
Tested on the CPU with NUMBA_ENABLE_CUDASIM=1.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numba import cuda

from align3d_rt.render import _math
from align3d_rt.render.splat import allocate_outputs, normal_step, splat_size

if TYPE_CHECKING:  # bound (compiled for this backend) by _math.bind() below; the names, for the linters
    from align3d_rt.render._math import (
        camera_coords,
        depth_key,
        pixel_index,
        rotated_bounds,
        shade_value,
        splat_span,
        to_u8,
        view_camera,
        window_constants,
        window_coords,
    )

_math.bind(globals(), cuda.jit(device=True))

_THREADS = 128
_EMPTY = np.uint64(_math.EMPTY_KEY)
_MASK = np.uint64(_math.INDEX_MASK)


@cuda.jit(device=True)
def _thread_pixel(size):
    """(view, row, column) of this thread in a per-pixel launch (grid x: pixels, grid y: views); row -1
    past the image."""
    p = cuda.grid(1)
    if p >= size * size:
        return cuda.blockIdx.y, -1, 0
    y = p // size
    return cuda.blockIdx.y, y, p - y * size


@cuda.jit
def _fill_u64(buf, value):
    i = cuda.grid(1)
    flat = buf.reshape(buf.size)
    if i < flat.size:
        flat[i] = value


@cuda.jit
def _bbox_kernel(points, rots, bbox):
    v = cuda.blockIdx.y
    start = cuda.grid(1)
    stride = cuda.gridDim.x * cuda.blockDim.x
    lo0, lo1, lo2, hi0, hi1, hi2 = rotated_bounds(points, rots, v, start, stride)
    cuda.atomic.min(bbox, (v, 0), lo0)
    cuda.atomic.min(bbox, (v, 1), lo1)
    cuda.atomic.min(bbox, (v, 2), lo2)
    cuda.atomic.max(bbox, (v, 3), hi0)
    cuda.atomic.max(bbox, (v, 4), hi1)
    cuda.atomic.max(bbox, (v, 5), hi2)


@cuda.jit
def _project_kernel(points, rots, bbox, size, window, splat, pzbuf, szbuf, pixels):
    i = cuda.grid(1)
    v = cuda.blockIdx.y
    if i >= points.shape[0]:
        return
    ccx, ccy, eye_z, z0, inv_span = view_camera(bbox, v)
    f, c, scale = window_constants(size, window)
    xc, yc, zc = camera_coords(points, i, rots, v, ccx, ccy, eye_z)
    u, w = window_coords(xc, yc, zc, f, c)
    px = pixel_index(u, size, scale)
    py = pixel_index(w, size, scale)
    pixels[v, i, 0] = px
    pixels[v, i, 1] = py
    key = np.uint64(depth_key(zc, z0, inv_span, i))
    cuda.atomic.min(pzbuf, (v, py, px), key)
    x0, x1 = splat_span(u, scale, splat)
    y0, y1 = splat_span(w, scale, splat)
    for yy in range(max(y0, 0), min(y1, size - 1) + 1):
        for xx in range(max(x0, 0), min(x1, size - 1) + 1):
            if key < szbuf[v, yy, xx]:
                cuda.atomic.min(szbuf, (v, yy, xx), key)


@cuda.jit
def _resolve_kernel(points, rots, bbox, pzbuf, szbuf, pos, visible, colors, labels, rgb, gt):
    size = pzbuf.shape[1]
    v, y, x = _thread_pixel(size)
    if y < 0:
        return
    k = pzbuf[v, y, x]
    if k != _EMPTY:
        visible[v, k & _MASK] = True
    k = szbuf[v, y, x]
    if k == _EMPTY:
        pos[v, y, x, 2] = 0.0
        return
    ccx, ccy, eye_z, z0, inv_span = view_camera(bbox, v)
    idx = k & _MASK
    xc, yc, zc = camera_coords(points, idx, rots, v, ccx, ccy, eye_z)
    pos[v, y, x, 0] = xc
    pos[v, y, x, 1] = yc
    pos[v, y, x, 2] = zc
    if rgb.shape[0] > 0:
        for ch in range(3):
            rgb[v, y, x, ch] = to_u8(colors[idx, ch])
    if gt.shape[0] > 0 and labels[idx] != 0:
        gt[v, y, x] = 255


@cuda.jit
def _shade_kernel(pos, images, step, gray):
    size = pos.shape[1]
    v, y, x = _thread_pixel(size)
    if y < 0:
        return
    if pos[v, y, x, 2] > 0.0:
        g = to_u8(shade_value(pos, v, y, x, size, step, gray))
        images[v, y, x, 0] = g
        images[v, y, x, 1] = g
        images[v, y, x, 2] = g


def render_splat_cuda(points: np.ndarray, rots: np.ndarray, size: int, window: int, point_size: int, gray: float,
                      colors: np.ndarray | None = None, labels: np.ndarray | None = None, stream: Any = 0,
                      keep_on_device: bool = False) -> dict[str, Any]:
    """The CUDA twin of `splat.render_splat` (same arguments, same outputs), launched on ``stream``.

    ``keep_on_device=True`` returns numba device arrays (no copy back), for a device pipeline."""
    n, v = points.shape[0], rots.shape[0]
    splat = splat_size(point_size, size, window)
    host = allocate_outputs(v, n, size, colors is not None, labels is not None)
    d_points = cuda.to_device(np.ascontiguousarray(points, np.float32), stream=stream)
    d_rots = cuda.to_device(np.ascontiguousarray(rots, np.float64), stream=stream)
    bbox0 = np.empty((v, 6), np.float64)
    bbox0[:, :3], bbox0[:, 3:] = np.inf, -np.inf
    d_bbox = cuda.to_device(bbox0, stream=stream)
    d_pz = cuda.device_array((v, size, size), np.uint64, stream=stream)
    d_sz = cuda.device_array((v, size, size), np.uint64, stream=stream)
    blocks_px = (size * size + _THREADS - 1) // _THREADS
    for buf in (d_pz, d_sz):
        _fill_u64[(buf.size + _THREADS - 1) // _THREADS, _THREADS, stream](buf, _EMPTY)
    d_pos = cuda.device_array((v, size, size, 3), np.float32, stream=stream)
    d = {k: cuda.to_device(a, stream=stream) for k, a in host.items()}
    cols = np.zeros((0, 3), np.float32) if colors is None else np.ascontiguousarray(colors, np.float32)
    labs = np.zeros(0, np.uint8) if labels is None else np.ascontiguousarray(labels, np.uint8)
    d_cols, d_labs = cuda.to_device(cols, stream=stream), cuda.to_device(labs, stream=stream)
    _bbox_kernel[(min(64, (n + _THREADS - 1) // _THREADS), v), _THREADS, stream](d_points, d_rots, d_bbox)
    _project_kernel[((n + _THREADS - 1) // _THREADS, v), _THREADS, stream](d_points, d_rots, d_bbox, size, window,
                                                                           splat, d_pz, d_sz, d["pixels"])
    _resolve_kernel[(blocks_px, v), _THREADS, stream](d_points, d_rots, d_bbox, d_pz, d_sz, d_pos, d["visible"],
                                                      d_cols, d_labs, d["rgb"], d["gt"])
    _shade_kernel[(blocks_px, v), _THREADS, stream](d_pos, d["images"], normal_step(splat), float(gray))
    if keep_on_device:
        return d
    return {k: a.copy_to_host(stream=stream) for k, a in d.items()}
