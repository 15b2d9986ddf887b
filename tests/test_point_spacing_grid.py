"""The grid search of the point spacing (kernels/nearest.py) gives the same h as the definition of
docs/runtime-spec.md 13.3 step 1 (np.unique over rows + k-d tree: ``point_spacing_distinct``), on
clouds with and without repeated points, and per point the exact nearest-other-location distance."""
from __future__ import annotations

import numpy as np
import pytest

from align3d_rt.kernels.nearest import nearest_other_d2
from align3d_rt.runtime.decisions import find_regions, point_spacing, point_spacing_distinct


def height_field(side: int, seed: int = 0) -> np.ndarray:
    """Organized scan-like surface (metres) with sensor noise, row-major."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side))
    z = 0.25 * np.exp(-(u ** 2 + v ** 2) * 1.5) + 0.002 * rng.standard_normal(u.shape)
    return (np.stack([u.ravel(), v.ravel(), z.ravel()], 1) * 0.05).astype(np.float32)


def sphere(n: int, seed: int = 0) -> np.ndarray:
    """Unorganized random points on a unit sphere."""
    p = np.random.default_rng(seed).standard_normal((n, 3))
    return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32)


def with_repeats(pts: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """``pts`` plus copies of a random ``share`` of its rows, shuffled (a zero's copy as -0.0)."""
    rng = np.random.default_rng(seed)
    copies = pts[rng.choice(len(pts), int(share * len(pts)), replace=False)].copy()
    copies[copies == 0] = -0.0
    return rng.permutation(np.concatenate([pts, copies]))


def brute_d2(pts: np.ndarray) -> np.ndarray:
    """Per point: the smallest squared distance (spec formula) to a point at another location."""
    p = pts.astype(np.float64)
    d = p[:, None, :] - p[None, :, :]
    d2 = (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2]
    d2[d2 == 0] = np.inf
    return d2.min(axis=1)


CLOUDS = {
    "organized": height_field(120),
    "organized+repeats": with_repeats(height_field(120), 0.2),
    "sphere": sphere(20_000),
    "sphere+repeats": with_repeats(sphere(20_000), 0.5, seed=1),
    "volume": np.random.default_rng(2).random((20_000, 3)).astype(np.float32),
    "two clusters": np.concatenate([height_field(60), height_field(60, seed=3) + 0.1]),
    "integer lattice (ties everywhere)": np.stack(np.meshgrid(*[np.arange(24.0)] * 3), -1).reshape(-1, 3)
                                         .astype(np.float32),
}


@pytest.mark.parametrize("name", list(CLOUDS))
def test_grid_spacing_equals_distinct_locations_definition(name: str) -> None:
    pts = CLOUDS[name]
    assert nearest_other_d2(pts.astype(np.float64)) is not None  # the grid path itself is compared
    assert point_spacing(pts) == point_spacing_distinct(pts)


@pytest.mark.parametrize("name", ["organized+repeats", "sphere+repeats", "integer lattice (ties everywhere)"])
def test_grid_nearest_is_exact_per_point(name: str) -> None:
    pts = CLOUDS[name][:3000]
    d2, first = nearest_other_d2(pts.astype(np.float64))  # type: ignore[misc]
    np.testing.assert_array_equal(d2, brute_d2(pts))
    # first: the lowest index of each distinct location (rows compared by value, -0.0 == 0.0)
    rows = pts.astype(np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, first_index = np.unique(rows, axis=0, return_index=True)
    assert sorted(np.flatnonzero(first)) == sorted(first_index)


def test_repeats_do_not_change_spacing_and_many_copies_fall_back() -> None:
    base = height_field(80)
    crowded = np.concatenate([base, np.repeat(base[:3], 400, axis=0)])  # 400 copies in one cell: k-d tree path
    assert nearest_other_d2(crowded.astype(np.float64)) is None
    assert point_spacing(crowded) == point_spacing_distinct(crowded) == point_spacing(base)


def test_far_outlier_and_degenerate_clouds() -> None:
    base = sphere(5000)
    outlier = np.concatenate([base, [[3e30, 0, 0]]]).astype(np.float32)
    assert point_spacing(outlier) == point_spacing_distinct(outlier) > 0
    apart = np.concatenate([height_field(60), height_field(60, seed=3) + 40.0])  # the grid would be too large
    assert nearest_other_d2(apart.astype(np.float64)) is None
    assert point_spacing(apart) == point_spacing_distinct(apart) > 0
    line = np.stack([np.arange(500.0), np.zeros(500), np.zeros(500)], 1).astype(np.float32)
    assert point_spacing(line) == point_spacing_distinct(line) == 1.0
    assert point_spacing(np.zeros((7, 3), np.float32)) == point_spacing_distinct(np.zeros((7, 3), np.float32)) == 0.0
    assert point_spacing(np.array([[0, 0, 0], [-0.0, 0, 0]], np.float32)) == 0.0  # one location


def test_regions_unchanged_by_repeats_of_cold_points() -> None:
    pts = height_field(100)
    rng = np.random.default_rng(4)
    scores = (np.sin(pts[:, 0] * 400) * np.cos(pts[:, 1] * 300) + 0.3 * rng.standard_normal(len(pts))).astype(
        np.float32)
    t = float(np.quantile(scores, 0.95))
    plain = find_regions(pts, scores, t, 5, 2.5, float(scores.min()), float(scores.max()))
    assert len(plain.regions) >= 3
    cold = np.flatnonzero(scores <= t)[:500]
    more = find_regions(np.concatenate([pts, pts[cold]]), np.concatenate([scores, scores[cold]]), t, 5, 2.5,
                        float(scores.min()), float(scores.max()))
    assert more.spacing == plain.spacing
    assert [r.to_json() for r in more.regions] == [r.to_json() for r in plain.regions]
    np.testing.assert_array_equal(more.labels[: len(pts)], plain.labels)
