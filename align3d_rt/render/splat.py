"""The fast CPU renderer: a numba z-buffer point-splat renderer with deferred (screen-space) shading.

One thread per view (prange), so no two threads ever write the same z-buffer: race-free without
atomics. Per view: bounding box -> Open3D default camera -> project every point (its correspondence
pixel into the point z-buffer, its square splat into the splat z-buffer; keys pack quantised depth
and index, the smallest wins) -> visibility from the point z-buffer -> gray shading from normals
computed on the splat z-buffer (no neighbour search) -> optional colour and ground-truth renders.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

from align3d_rt.render import _math

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

_math.bind(globals(), njit(cache=True, error_model="numpy"))

EMPTY = np.uint64(_math.EMPTY_KEY)
MASK = np.uint64(_math.INDEX_MASK)


BLOCK = 256  # points projected together before their z-buffer writes (the scratch stays in L1)


@njit(cache=True, error_model="numpy")
def _project_block(points, start, stop, rots, v, camera, f, c, scale, splat, size, keys, spans):
    """Points start..stop-1 of view v: their z-buffer keys and pixel spans into the scratch arrays.

    spans[j] = (pixel x, pixel y, splat x0, x1, y0, y1), clipped to the image. Kept apart from the
    scattered z-buffer writes, this loop has no memory dependences (the whole pass: 37 -> 22 ns a point).
    """
    ccx, ccy, eye_z, z0, inv_span = camera
    for j in range(stop - start):
        i = start + j
        xc, yc, zc = camera_coords(points, i, rots, v, ccx, ccy, eye_z)
        u, w = window_coords(xc, yc, zc, f, c)
        keys[j] = np.uint64(depth_key(zc, z0, inv_span, i))
        spans[j, 0] = pixel_index(u, size, scale)
        spans[j, 1] = pixel_index(w, size, scale)
        x0, x1 = splat_span(u, scale, splat)
        y0, y1 = splat_span(w, scale, splat)
        spans[j, 2] = max(x0, 0)
        spans[j, 3] = min(x1, size - 1)
        spans[j, 4] = max(y0, 0)
        spans[j, 5] = min(y1, size - 1)


@njit(cache=True, error_model="numpy")
def _splat_small(sz, key, x0, x1, y0, y1, size):
    """Min-write key over a splat of at most 3x3 pixels without data-dependent branches.

    Always visits the 3x3 block at (x0, y0) (moved inside the image at the far edges); cells outside
    the splat are rewritten with their own value. About 1.5x faster than a loop over the exact span.
    """
    ax = min(x0, size - 3)
    ay = min(y0, size - 3)
    for dy in range(3):
        yy = ay + dy
        in_y = y0 <= yy and yy <= y1
        for dx in range(3):
            xx = ax + dx
            old = sz[yy, xx]
            sz[yy, xx] = key if (in_y and x0 <= xx and xx <= x1 and key < old) else old


@njit(cache=True, error_model="numpy")
def _render_view(v, points, rots, size, window, splat, bbox, pzbuf, szbuf, pixels, visible):
    """View v: bounding box and camera, then every point's correspondence pixel and z-buffer keys."""
    n = points.shape[0]
    pz = pzbuf[v]
    sz = szbuf[v]
    pz[:, :] = EMPTY  # this view's buffers are initialised here, in parallel with the other views
    sz[:, :] = EMPTY
    visible[v] = False
    lo0, lo1, lo2, hi0, hi1, hi2 = rotated_bounds(points, rots, v, 0, 1)
    bbox[v, 0] = lo0
    bbox[v, 1] = lo1
    bbox[v, 2] = lo2
    bbox[v, 3] = hi0
    bbox[v, 4] = hi1
    bbox[v, 5] = hi2
    camera = view_camera(bbox, v)
    f, c, scale = window_constants(size, window)
    small = size >= 3
    keys = np.empty(BLOCK, np.uint64)
    spans = np.empty((BLOCK, 6), np.int64)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        _project_block(points, start, stop, rots, v, camera, f, c, scale, splat, size, keys, spans)
        for j in range(stop - start):
            key = keys[j]
            px = spans[j, 0]
            py = spans[j, 1]
            pixels[v, start + j, 0] = px
            pixels[v, start + j, 1] = py
            pz[py, px] = min(key, pz[py, px])
            x0 = spans[j, 2]
            x1 = spans[j, 3]
            y0 = spans[j, 4]
            y1 = spans[j, 5]
            if small and x1 - x0 < 3 and y1 - y0 < 3:  # every reference point size at 336 but cable_gland's
                _splat_small(sz, key, x0, x1, y0, y1, size)
            else:
                for yy in range(y0, y1 + 1):
                    for xx in range(x0, x1 + 1):
                        sz[yy, xx] = min(key, sz[yy, xx])


@njit(cache=True, error_model="numpy")
def _resolve_row(v, y, points, rots, size, colors, labels, bbox,
                 pzbuf, szbuf, pos, visible, images, rgb, gt):
    """Row y of view v: visibility flags, the position buffer, colour and ground truth.

    Also initialises the row of every output image (white background, empty mask).
    """
    ccx, ccy, eye_z, z0, inv_span = view_camera(bbox, v)
    has_rgb = rgb.shape[0] > 0
    has_gt = gt.shape[0] > 0
    images[v, y] = 255
    if has_rgb:
        rgb[v, y] = 255
    if has_gt:
        gt[v, y] = 0
    for x in range(size):
        k = pzbuf[v, y, x]
        if k != EMPTY:
            visible[v, k & MASK] = True  # each point owns at most one pixel: no two rows write one flag
        k = szbuf[v, y, x]
        if k == EMPTY:
            pos[v, y, x, 2] = 0.0
            continue
        idx = k & MASK
        xc, yc, zc = camera_coords(points, idx, rots, v, ccx, ccy, eye_z)
        pos[v, y, x, 0] = xc
        pos[v, y, x, 1] = yc
        pos[v, y, x, 2] = zc
        if has_rgb:
            for ch in range(3):
                rgb[v, y, x, ch] = to_u8(colors[idx, ch])
        if has_gt and labels[idx] != 0:
            gt[v, y, x] = 255


@njit(cache=True, error_model="numpy")
def _shade_row(v, y, size, step, gray, pos, images):
    """Row y of view v: deferred gray shading from screen-space normals of the position buffer."""
    for x in range(size):
        if pos[v, y, x, 2] > 0.0:
            g = to_u8(shade_value(pos, v, y, x, size, step, gray))
            images[v, y, x, 0] = g
            images[v, y, x, 1] = g
            images[v, y, x, 2] = g


@njit(parallel=True, cache=True, error_model="numpy", nogil=True)
def _render_all(points, rots, size, window, splat, step, gray, colors, labels,
                pzbuf, szbuf, pos, pixels, visible, images, rgb, gt, bbox):
    nv = rots.shape[0]
    # Projection writes whole z-buffers: one view per thread. The per-pixel phases that follow are
    # race-free per row, so they spread over (view, row) and balance the cores.
    for v in prange(nv):
        _render_view(v, points, rots, size, window, splat, bbox, pzbuf, szbuf, pixels, visible)
    for t in prange(nv * size):
        _resolve_row(t // size, t % size, points, rots, size, colors, labels, bbox,
                     pzbuf, szbuf, pos, visible, images, rgb, gt)
    for t in prange(nv * size):
        _shade_row(t // size, t % size, size, step, gray, pos, images)


@njit(cache=True)
def zbuffer_visible(pixels, depth, size):
    """(N,) bool: per pixel, the nearest point (ties: lowest index) is the only visible one.

    pixels (N,2) int32 (x, y) in [0,size-1], depth (N,) float64 camera depth.
    """
    n = pixels.shape[0]
    best = np.full((size, size), -1, np.int64)
    for i in range(n):
        x = pixels[i, 0]
        y = pixels[i, 1]
        j = best[y, x]
        if j < 0 or depth[i] < depth[j]:
            best[y, x] = i
    out = np.zeros(n, np.bool_)
    for y in range(size):
        for x in range(size):
            if best[y, x] >= 0:
                out[best[y, x]] = True
    return out


def splat_size(settings_point_size: int, size: int, window: int) -> float:
    """Splat side in pixels at image size S for a point size given at the reference window."""
    return float(settings_point_size) * size / window


def normal_step(splat: float) -> int:
    """Neighbour distance (pixels) for screen-space normals: about one splat, so neighbours differ."""
    return max(1, int(round(splat)))


def allocate_outputs(v: int, n: int, size: int, with_rgb: bool, with_gt: bool,
                     initialise: bool = True) -> dict[str, np.ndarray]:
    """Output arrays; ``initialise=False`` leaves them uninitialised for a kernel that fills them."""
    if not initialise:
        return {
            "pixels": np.empty((v, n, 2), np.int32),
            "visible": np.empty((v, n), np.bool_),
            "images": np.empty((v, size, size, 3), np.uint8),
            "rgb": np.empty((v if with_rgb else 0, size, size, 3), np.uint8),
            "gt": np.empty((v if with_gt else 0, size, size), np.uint8),
        }
    return {
        "pixels": np.empty((v, n, 2), np.int32),
        "visible": np.zeros((v, n), np.bool_),
        "images": np.full((v, size, size, 3), 255, np.uint8),
        "rgb": np.full((v if with_rgb else 0, size, size, 3), 255, np.uint8),
        "gt": np.zeros((v if with_gt else 0, size, size), np.uint8),
    }


_WORKSPACE = threading.local()


def _scratch(v: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This thread's z-buffers, position buffer and boxes for V views at size S, reused across calls.

    The kernel initialises every element it reads, so reuse changes no result. Fresh buffers of this
    size (about 3 MB a view) cost a page fault per 4 KiB on first touch: allocating them for every
    call made a render up to twice as slow until the allocator began to recycle them.
    """
    held = getattr(_WORKSPACE, "buffers", None)
    if held is None or held[0].shape != (v, size, size):
        held = (np.empty((v, size, size), np.uint64), np.empty((v, size, size), np.uint64),
                np.empty((v, size, size, 3), np.float32), np.empty((v, 6), np.float64))
        _WORKSPACE.buffers = held
    return held


def render_splat(points: np.ndarray, rots: np.ndarray, size: int, window: int, point_size: int, gray: float,
                 colors: np.ndarray | None = None, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run the CPU renderer; returns pixels, visible (no fallback), images, rgb, gt (empty when not asked)."""
    n = points.shape[0]
    v = rots.shape[0]
    splat = splat_size(point_size, size, window)
    out = allocate_outputs(v, n, size, colors is not None, labels is not None, initialise=False)
    pzbuf, szbuf, pos, bbox = _scratch(v, size)
    cols = np.zeros((0, 3), np.float32) if colors is None else np.ascontiguousarray(colors, np.float32)
    labs = np.zeros(0, np.uint8) if labels is None else np.ascontiguousarray(labels, np.uint8)
    _render_all(np.ascontiguousarray(points, np.float32), np.ascontiguousarray(rots, np.float64), size, window,
                splat, normal_step(splat), float(gray), cols, labs, pzbuf, szbuf, pos, out["pixels"], out["visible"],
                out["images"], out["rgb"], out["gt"], bbox)
    return out
