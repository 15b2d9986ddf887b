"""The numba splat renderer: shapes, z-buffer visibility, fallback, camera maths, colour and gt renders."""
from __future__ import annotations

import math

import numpy as np
import pytest

from align3d_rt.errors import InputError
from align3d_rt.render import RenderResult, RenderSettings, render_views, settings_for
from align3d_rt.render.camera import default_camera, rotate_about_centre, view_rotations
from align3d_rt.render.shapes import organized_object, unorganized_cloud
from align3d_rt.render.splat import render_splat
from align3d_rt.scoring import apply_visibility_fallback


@pytest.fixture(scope="module")
def bagel() -> np.ndarray:
    return organized_object(size=128)[0]


def _plane(n: int = 161) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, n)
    x, y = np.meshgrid(t, t)
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1).astype(np.float32)


def test_shapes_and_dtypes(bagel: np.ndarray) -> None:
    s = RenderSettings(preset="mvtec9", image_size=112)
    r = render_views(bagel, s)
    assert isinstance(r, RenderResult) and r.settings == s
    v, n = 9, bagel.shape[0]
    assert r.images.shape == (v, 112, 112, 3) and r.images.dtype == np.uint8
    assert r.pixels.shape == (v, n, 2) and r.pixels.dtype == np.int32
    assert r.visible.shape == (v, n) and r.visible.dtype == np.bool_
    assert r.rgb_images is None and r.gt_masks is None
    assert r.pixels.min() >= 0 and r.pixels.max() <= 111
    assert (r.images[..., 0] == r.images[..., 1]).all() and (r.images[..., 0] == r.images[..., 2]).all()
    assert (r.images[:, 0, 0] == 255).all()  # white background in the corners
    assert 60 < np.median(r.images[r.images[..., 0] < 255][:, 0]) < 255  # lit gray object


def test_one_visible_point_per_pixel_matches_numpy_zbuffer(bagel: np.ndarray) -> None:
    s = RenderSettings(preset="paper9", image_size=96)
    rots = view_rotations(s)
    raw = render_splat(bagel, rots, 96, 1024, 8, 0.7)
    for v in range(rots.shape[0]):
        vis = raw["visible"][v]
        pix = raw["pixels"][v]
        flat = pix[:, 1].astype(np.int64) * 96 + pix[:, 0]
        counts = np.bincount(flat[vis], minlength=96 * 96)
        occupied = np.bincount(flat, minlength=96 * 96) > 0
        assert (counts[occupied] == 1).all() and (counts[~occupied] == 0).all()
        # the winner of each pixel is the point nearest to the camera
        q = rotate_about_centre(bagel, rots[v])
        cam = default_camera(q, 1024)
        np_pix, depth = cam.pixels(q, 96)
        assert (np.abs(np_pix - pix) <= 1).all() and (np_pix == pix).mean() > 0.999
        order = np.lexsort((np.arange(len(depth)), depth, flat))
        first = order[np.r_[True, flat[order][1:] != flat[order][:-1]]]
        assert len(first) == vis.sum()
        assert (np.sort(first) == np.flatnonzero(vis)).mean() > 0.99


def test_every_point_gets_a_view_after_fallback(bagel: np.ndarray) -> None:
    s = RenderSettings(preset="mvtec9", image_size=64)  # small images: many hidden points
    raw = render_splat(bagel, view_rotations(s), 64, 1024, 8, 0.7)
    assert (~raw["visible"].any(axis=0)).sum() > 0
    r = render_views(bagel, s)
    assert r.visible.any(axis=0).all()


def test_fallback_borrows_from_index_nearest() -> None:
    vis = np.zeros((2, 7), bool)
    vis[0, 1] = True
    vis[1, 5] = True
    out = apply_visibility_fallback(vis)
    # 0 <- 1; 2 <- 1; 3 is equidistant (1 and 5): lower index 1; 4 <- 5; 6 <- 5
    expected_source = [1, 1, 1, 1, 5, 5, 5]
    assert (out == vis[:, expected_source]).all()
    assert (apply_visibility_fallback(np.zeros((2, 3), bool)) == 0).all()


def test_plane_projects_where_the_camera_maths_says() -> None:
    pts = _plane()
    s = RenderSettings(preset="mvtec9", image_size=336)  # view 2 is X 0: the plane faces the camera
    r = render_views(pts, s, colors=np.zeros_like(pts))
    f = 1024 / (2 * math.tan(math.radians(30)))
    dist = 0.7 * 2.0 / math.tan(math.radians(30))
    # flip about X: (x, y) -> (x, -y); camera y = -(world y) -> image row follows +y of the input
    u = f * pts[:, 0] / dist + 511.5
    w = f * pts[:, 1] / dist + 511.5
    expected = np.stack([np.floor(u * 336 / 1024), np.floor(w * 336 / 1024)], axis=1).astype(np.int32)
    assert (r.pixels[2] == expected).all()
    covered = r.rgb_images[2, ..., 0] == 0
    lo, hi = expected.min(), expected.max()
    assert covered[lo + 1:hi, lo + 1:hi].all()  # the whole square is covered
    assert not covered[:lo - 2].any() and not covered[hi + 3:].any()  # background outside
    img = r.images[2, ..., 0]
    assert (img[~covered] == 255).all()
    # facing the camera: bright everywhere (diffuse close to full), brightest at the centre
    assert img[lo + 5:hi - 5, lo + 5:hi - 5].min() > 200
    assert img[168, 168] >= img[lo + 5, lo + 5]


def test_rgb_and_gt_renders(bagel: np.ndarray) -> None:
    colors = np.zeros((len(bagel), 3), np.float32)
    colors[:, 0] = 1.0
    labels = (bagel[:, 0] > 0).astype(np.uint8)
    s = RenderSettings(preset="mvtec9", image_size=96)
    r = render_views(bagel, s, colors=colors, labels=labels)
    assert r.rgb_images is not None and r.gt_masks is not None
    covered = (r.rgb_images != 255).any(axis=-1)
    assert covered.mean() > 0.1
    assert (r.rgb_images[covered] == [255, 0, 0]).all()
    assert (r.images[~covered] == 255).all() and (r.images[covered] < 255).mean() > 0.9
    assert set(np.unique(r.gt_masks)) == {0, 255}
    assert not (r.gt_masks[~covered]).any()
    v = 2  # X 0 view: x > 0 stays on the right half of the image
    cols = np.nonzero(r.gt_masks[v])[1]
    assert cols.min() >= 96 // 2 - 2


def test_unorganized_cloud_and_bad_input() -> None:
    pts = unorganized_cloud(4000)
    r = render_views(pts, settings_for("real3d", "x", base=RenderSettings(image_size=80)))
    assert r.images.shape == (9, 80, 80, 3) and r.visible.any(axis=0).all()
    with pytest.raises(InputError):
        render_views(np.zeros((5, 2), np.float32), RenderSettings())
    bad = pts.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError):
        render_views(bad, RenderSettings())
    with pytest.raises(ValueError):
        render_views(pts, RenderSettings(renderer="nope"))


def test_settings_for() -> None:
    s = settings_for("mvtec3d", "cable_gland")
    assert (s.point_size, s.window, s.preset) == (12, 1024, "mvtec9")
    r = settings_for("real3d", "airplane")
    assert (r.point_size, r.window, r.normal_radius, r.normal_max_nn, r.preset) == (12, 1036, 0.8, 30, "paper9")
    e = settings_for("eyecandies", "CandyCane", base=RenderSettings(preset="paper9", image_size=224))
    assert (e.point_size, e.window, e.preset, e.image_size) == (10, 1036, "paper9", 224)
    with pytest.raises(ValueError):
        settings_for("kitti", "car")


def _python_splat_winners(points: np.ndarray, rots: np.ndarray, v: int, size: int, window: int,
                          splat: float) -> np.ndarray:
    """(S,S) int64 splat winner per pixel (-1: empty), from the shared maths run as plain Python."""
    from align3d_rt.render import _math

    bounds = _math.rotated_bounds(points, rots, v, 0, 1)
    bbox = np.zeros((v + 1, 6))
    bbox[v] = bounds
    ccx, ccy, eye_z, z0, inv_span = _math.view_camera(bbox, v)
    f, c, scale = _math.window_constants(size, window)
    best = np.full((size, size), _math.EMPTY_KEY, np.uint64)
    for i in range(points.shape[0]):
        xc, yc, zc = _math.camera_coords(points, i, rots, v, ccx, ccy, eye_z)
        u, w = _math.window_coords(xc, yc, zc, f, c)
        key = np.uint64(_math.depth_key(zc, z0, inv_span, i))
        x0, x1 = _math.splat_span(u, scale, splat)
        y0, y1 = _math.splat_span(w, scale, splat)
        for y in range(max(y0, 0), min(y1, size - 1) + 1):  # empty for splats wholly off the image
            for x in range(max(x0, 0), min(x1, size - 1) + 1):
                best[y, x] = min(best[y, x], key)
    winners = (best & np.uint64(_math.INDEX_MASK)).astype(np.int64)
    winners[best == np.uint64(_math.EMPTY_KEY)] = -1
    return winners


@pytest.mark.parametrize("point_size", [80, 140])  # splats of 2.5 px (the 3x3 path) and 4.4 px
def test_splat_winners_match_plain_python(point_size: int) -> None:
    """Every pixel's splat winner equals a plain-Python run of the same maths (the blocked,
    branch-free kernel changes speed only). A cube seen face-on overflows the frame, so some splats
    are clipped at the image edges; 1500 points are not a whole number of 256-point blocks."""
    from align3d_rt.render.splat import splat_size

    rng = np.random.default_rng(3)
    pts = rng.uniform(-0.5, 0.5, (1500, 3)).astype(np.float32)
    idx = np.arange(len(pts))
    colors = np.stack([idx % 256, idx // 256, np.zeros_like(idx)], axis=1).astype(np.float32) / 255.0
    rots = view_rotations(RenderSettings(preset="paper9"))
    size, window = 32, 1024
    raw = render_splat(pts, rots, size, window, point_size, 0.7, colors, np.ones(len(pts), np.uint8))
    edge_views = 0
    for v in range(rots.shape[0]):
        expected = _python_splat_winners(pts.astype(np.float64), rots, v, size, window,
                                         splat_size(point_size, size, window))
        rgb = raw["rgb"][v].astype(np.int64)
        covered = raw["gt"][v] == 255
        assert (covered == (expected >= 0)).all()
        edge_views += int(covered[0].any() or covered[-1].any() or covered[:, 0].any() or covered[:, -1].any())
        got = rgb[..., 0] + 256 * rgb[..., 1]
        assert (got[covered] == expected[covered]).all()
    assert edge_views > 0
