"""Point spacing, defect regions and the per-part decision (docs/runtime-spec.md 13.3-13.4) on
generated clouds with planted score fields."""
from __future__ import annotations

import numpy as np
import pytest

from align3d_rt.errors import InputError
from align3d_rt.runtime.decisions import decide, find_regions, normalize, point_spacing

T = 0.5  # point threshold of the planted fields: background below, planted regions above


# ---- generated clouds (all quasi-uniform, so a planted ball is one connected patch) -----------------
def grid_plane(nx: int, ny: int, pitch: float, seed: int = 0) -> np.ndarray:
    """Organized height field: row-major grid of pitch ``pitch`` with a smooth, low bump."""
    u, v = np.meshgrid(np.arange(nx) * pitch, np.arange(ny) * pitch)
    z = 0.05 * pitch * np.sin(u / (7 * pitch) + seed)
    return np.stack([u.ravel(), v.ravel(), z.ravel()], 1).astype(np.float32)


def fibonacci_sphere(n: int, radius: float, seed: int = 0) -> np.ndarray:
    """Quasi-uniform unorganized sphere (points shuffled)."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5 ** 0.5) * i
    pts = radius * np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    return np.random.default_rng(seed).permutation(pts).astype(np.float32)


def jittered_cylinder(n_around: int, n_up: int, radius: float, seed: int = 0) -> np.ndarray:
    """Unorganized cylinder: a (theta, z) grid of equal arc/height steps, jittered 5 %, shuffled."""
    rng = np.random.default_rng(seed)
    step = 2 * np.pi * radius / n_around
    th, z = np.meshgrid(np.arange(n_around) * (2 * np.pi / n_around), np.arange(n_up) * step)
    th = th.ravel() + rng.uniform(-0.05, 0.05, th.size) * (2 * np.pi / n_around)
    z = z.ravel() + rng.uniform(-0.05, 0.05, z.size) * step
    pts = np.stack([radius * np.cos(th), radius * np.sin(th), z], 1)
    return rng.permutation(pts).astype(np.float32)


CLOUDS = {
    "grid_coarse": lambda: grid_plane(60, 50, 1.0),
    "grid_fine_mm": lambda: grid_plane(120, 90, 0.0004),
    "sphere_sparse": lambda: fibonacci_sphere(3000, 1.0),
    "sphere_dense": lambda: fibonacci_sphere(12000, 50.0, seed=3),
    "cylinder": lambda: jittered_cylinder(120, 60, 2.0, seed=1),
}


def plant(points: np.ndarray, n_regions: int, radius_h: float, seed: int = 0
          ) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Background scores in [0, 0.4); ``n_regions`` balls of radius ``radius_h`` spacings around seeds
    far apart, scores in (0.6, 1]. Returns scores, the planted index sets (ascending), spacing h."""
    rng = np.random.default_rng(seed)
    h = point_spacing(points)
    scores = rng.uniform(0.0, 0.4, len(points)).astype(np.float32)
    p64 = points.astype(np.float64)
    centres: list[np.ndarray] = []
    planted = []
    for idx in rng.permutation(len(points)):
        c = p64[idx]
        if any(np.linalg.norm(c - o) < 4 * radius_h * h for o in centres):
            continue
        ball = np.flatnonzero(np.linalg.norm(p64 - c, axis=1) <= radius_h * h)
        centres.append(c)
        planted.append(ball)
        scores[ball] = rng.uniform(0.6, 1.0, len(ball)).astype(np.float32)
        if len(planted) == n_regions:
            break
    assert len(planted) == n_regions
    return scores, planted, h


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_planted_regions_recovered_exactly(name: str) -> None:
    points = CLOUDS[name]()
    scores, planted, h = plant(points, n_regions=4, radius_h=5.0, seed=len(name))
    found = find_regions(points, scores, T, min_points=10, spacing_factor=2.5, lo=0.0, hi=1.0)
    assert found.spacing == pytest.approx(h)
    assert len(found.regions) == 4
    got = sorted(tuple(r.indices.tolist()) for r in found.regions)
    assert got == sorted(tuple(p.tolist()) for p in planted)
    for region in found.regions:
        np.testing.assert_array_equal(np.flatnonzero(found.labels == region.id), region.indices)
    assert (found.labels == 0).sum() == len(points) - sum(len(p) for p in planted)
    assert found.labels.dtype == np.int32 and found.labels.shape == (len(points),)


def test_spacing_of_a_regular_grid_is_its_pitch() -> None:
    for pitch in (1.0, 0.25, 0.0004, 3.0):
        pts = grid_plane(40, 30, pitch)
        pts[:, 2] = 0.0
        assert point_spacing(pts) == pytest.approx(pitch, rel=1e-6)
    # rotated in space, and with every point given twice (duplicates are one location)
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    flat = grid_plane(40, 30, 0.5)
    flat[:, 2] = 0.0
    pts = (flat.astype(np.float64) @ rot.T).astype(np.float32)
    assert point_spacing(np.concatenate([pts, pts])) == pytest.approx(0.5, rel=1e-5)


def test_spacing_lower_median_and_small_clouds() -> None:
    line = lambda xs: np.array([[x, 0.0, 0.0] for x in xs], np.float32)  # noqa: E731
    # nearest squared distances 1, 1, 4, 16: lower median (index (4-1)//2 = 1) = 1
    assert point_spacing(line([0, 1, 3, 7])) == 1.0
    # 1, 1, 4, 16, 64: index 2 = 4 -> h = 2
    assert point_spacing(line([0, 1, 3, 7, 15])) == 2.0
    assert point_spacing(line([5])) == 0.0
    assert point_spacing(line([2, 2, 2])) == 0.0  # one distinct location
    assert point_spacing(np.zeros((0, 3), np.float32)) == 0.0


def strip_scores(nx: int, ny: int, columns: list[range], value: float = 0.9) -> np.ndarray:
    """Scores on a row-major nx x ny grid: ``value`` in the given column ranges, 0.1 elsewhere."""
    s = np.full((ny, nx), 0.1, np.float32)
    for cols in columns:
        s[:, list(cols)] = value
    return s.ravel()


def test_touching_regions_merge_separated_stay_apart() -> None:
    """Documented behaviour: single linkage joins two planted regions whose nearest points are within
    r = 2.5 h; a gap wider than r keeps them apart."""
    pts = grid_plane(40, 10, 1.0)
    pts[:, 2] = 0.0
    # columns 0-9 and 12-21: nearest points 3 apart > r = 2.5 -> two regions
    apart = find_regions(pts, strip_scores(40, 10, [range(0, 10), range(12, 22)]), T, 10, 2.5, 0.0, 1.0)
    assert [r.num_points for r in apart.regions] == [100, 100]
    # columns 0-9 and 11-20: 2 apart <= r -> one region of both
    merged = find_regions(pts, strip_scores(40, 10, [range(0, 10), range(11, 21)]), T, 10, 2.5, 0.0, 1.0)
    assert [r.num_points for r in merged.regions] == [200]
    # the same gap of 3 links with a larger spacing factor
    wide = find_regions(pts, strip_scores(40, 10, [range(0, 10), range(12, 22)]), T, 10, 3.0, 0.0, 1.0)
    assert [r.num_points for r in wide.regions] == [200]


def test_isolated_hot_points_dropped_by_min_points() -> None:
    pts = grid_plane(50, 50, 1.0)
    scores = np.full(len(pts), 0.1, np.float32)
    lone = np.array([r * 50 + c for r in range(2, 50, 10) for c in range(2, 50, 10)])  # 10 apart > r
    scores[lone] = 0.95
    assert find_regions(pts, scores, T, 10, 2.5, 0.0, 1.0).regions == []
    singles = find_regions(pts, scores, T, 1, 2.5, 0.0, 1.0)
    assert len(singles.regions) == len(lone)
    assert sorted(r.seed_index for r in singles.regions) == sorted(lone.tolist())
    # a planted patch among the noise is kept, the noise is not
    patch = np.array([r * 50 + c for r in range(25, 30) for c in range(25, 30)])  # 3 from the nearest lone point
    scores[patch] = 0.8
    kept = find_regions(pts, scores, T, 10, 2.5, 0.0, 1.0)
    assert [r.indices.tolist() for r in kept.regions] == [sorted(patch.tolist())]
    assert (kept.labels[lone] == 0).all()


def test_region_order_ids_and_fields() -> None:
    pts = grid_plane(30, 30, 0.5)
    pts[:, 2] = 0.0
    s = np.full((30, 30), 0.1, np.float32)
    s[2:6, 2:6] = 0.7          # A: 16 points, max 0.7
    s[10:16, 10:16] = 0.7      # B: 36 points, max 0.7 -> before A (more points)
    s[20:23, 20:24] = 0.7
    s[21, 22] = 0.9            # C: 12 points, max 0.9 -> first
    s[25:28, 2:6] = 0.7        # D: 12 points, max 0.7, after A (fewer points)
    found = find_regions(pts, s.ravel(), T, 10, 2.5, lo=0.1, hi=0.9)
    assert [r.id for r in found.regions] == [1, 2, 3, 4]
    assert ([(r.num_points, round(r.max_score, 6)) for r in found.regions]
            == [(12, 0.9), (36, 0.7), (16, 0.7), (12, 0.7)])
    c, b, a, d = found.regions
    assert c.seed_index == 21 * 30 + 22
    assert a.seed_index == 2 * 30 + 2  # equal scores: the lowest index
    assert a.centroid == pytest.approx((1.75, 1.75, 0.0))
    assert a.bbox_min == (1.0, 1.0, 0.0) and a.bbox_max == (2.5, 2.5, 0.0) and a.extent == (1.5, 1.5, 0.0)
    assert a.area == pytest.approx(16 * 0.25)
    assert c.mean_score == pytest.approx((11 * np.float64(np.float32(0.7)) + np.float64(np.float32(0.9))) / 12)
    assert c.max_score_normalized == pytest.approx(0.5 + (np.float32(0.9) - 0.5) / 0.8)
    for r in found.regions:
        assert (found.labels[r.indices] == r.id).all()
    json_keys = set(found.regions[0].to_json())
    assert json_keys == {"id", "num_points", "seed_index", "centroid", "bbox_min", "bbox_max", "extent", "area",
                         "max_score", "mean_score", "max_score_normalized"}


def test_hot_is_strictly_above_threshold() -> None:
    pts = grid_plane(10, 10, 1.0)
    at = np.full(100, np.float32(T), np.float32)
    assert find_regions(pts, at, T, 1, 2.5, 0.0, 1.0).regions == []
    above = np.nextafter(at, np.float32(1))
    assert [r.num_points for r in find_regions(pts, above, T, 1, 2.5, 0.0, 1.0).regions] == [100]


def test_normalize_convention() -> None:
    assert normalize(0.3, 0.3, 0.0, 1.0) == 0.5
    assert normalize(0.55, 0.3, 0.0, 0.5) == 1.0  # 0.5 + 0.25/0.5 = 1.0
    assert normalize(-10.0, 0.3, 0.0, 1.0) == 0.0 and normalize(10.0, 0.3, 0.0, 1.0) == 1.0
    np.testing.assert_allclose(normalize(np.array([0.1, 0.3, 0.4]), 0.3, 0.0, 0.8), [0.25, 0.5, 0.625])


def _cal(object_threshold: float = 1.0, point_threshold: float = T):  # noqa: ANN202
    from align3d_rt.artifacts.calibration import Calibration, ThresholdSet

    return Calibration(product="p", source={"kind": "bundle", "manifest_sha256": "a"}, scoring="default", dataset="",
                       category="", rule={"name": "conformal"}, n_good=20, n_bad=0,
                       object=ThresholdSet(object_threshold, 0.5, 1.5), point=ThresholdSet(point_threshold, 0.0, 1.0))


def test_decide_object_score_strict_and_outputs() -> None:
    pts = grid_plane(20, 20, 1.0)
    s = strip_scores(20, 20, [range(3, 6)])
    at = decide(pts, s, 1.0, _cal())
    assert at.decision == "ok" and at.object_score_normalized == 0.5
    above = decide(pts, s, float(np.nextafter(1.0, 2.0)), _cal())
    assert above.decision == "reject"
    assert at.normalized.dtype == np.float32 and at.normalized.shape == (400,)
    np.testing.assert_allclose(at.normalized, np.clip(0.5 + (s.astype(np.float64) - T), 0, 1).astype(np.float32))
    out = at.to_json()
    assert set(out) == {"decision", "object_score_normalized", "regions", "num_regions"}
    assert out["num_regions"] == 1 and out["regions"][0]["num_points"] == 60  # ok part, still a region


@pytest.mark.parametrize("bad", ["object", "points", "scores"])
def test_decide_refuses_non_finite(bad: str) -> None:
    pts = grid_plane(5, 5, 1.0)
    s = np.full(25, 0.1, np.float32)
    obj = 1.0
    if bad == "object":
        obj = float("nan")
    elif bad == "points":
        pts[3, 1] = np.inf
    else:
        s[7] = np.nan
    with pytest.raises(InputError, match="not finite"):
        decide(pts, s, obj, _cal())


def test_repeated_points_are_one_location() -> None:
    """Many copies of the same hot point link (distance 0) without pairing every copy with every other."""
    pts = grid_plane(20, 20, 1.0)
    scores = np.full(len(pts), 0.1, np.float32)
    copies = np.repeat(pts[210:211], 20000, axis=0)
    cloud = np.concatenate([pts, copies])
    hot = np.concatenate([scores, np.full(len(copies), 0.9, np.float32)])
    found = find_regions(cloud, hot, T, 10, 2.5, 0.0, 1.0)
    assert found.spacing == 1.0
    assert [r.num_points for r in found.regions] == [20000]
    assert found.regions[0].indices.tolist() == list(range(400, 20400))
    assert found.regions[0].area == 20000.0  # num_points * h^2, copies included
