"""Property tests of spacing and regions (docs/runtime-spec.md 13.3) against a brute-force reference.

Points lie on a small integer lattice (scaled by a power of two), so every squared distance is exact
and no pair sits within an ulp of the radius; duplicates and ties are frequent on purpose.
"""
from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip(
    "hypothesis", reason="hypothesis is not installed here (requirements.txt lists it; scripts/setup.sh installs it)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from align3d_rt.runtime.decisions import find_regions, point_spacing  # noqa: E402


def brute_spacing(points: np.ndarray) -> float:
    u = np.unique(points, axis=0).astype(np.float64)
    if len(u) < 2:
        return 0.0
    d = u[:, None, :] - u[None, :, :]
    d2 = d[..., 0] ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2
    np.fill_diagonal(d2, np.inf)
    nn = np.sort(d2.min(axis=1))
    return float(np.sqrt(nn[(len(nn) - 1) // 2]))


def brute_components(points: np.ndarray, hot: np.ndarray, r2: float) -> list[list[int]]:
    """Union-find over every pair of hot points with squared distance <= r2."""
    parent = {int(i): int(i) for i in hot}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    p = points[hot].astype(np.float64)
    d = p[:, None, :] - p[None, :, :]
    linked = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2] <= r2
    for a, b in zip(*np.nonzero(np.triu(linked, 1)), strict=True):
        parent[root(int(hot[a]))] = root(int(hot[b]))
    groups: dict[int, list[int]] = {}
    for i in hot:
        groups.setdefault(root(int(i)), []).append(int(i))
    return [sorted(g) for g in groups.values()]


clouds = st.integers(1, 120).flatmap(lambda n: st.tuples(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 3)), min_size=n, max_size=n),
    st.lists(st.integers(0, 9), min_size=n, max_size=n),
))


@settings(max_examples=150, deadline=None, database=None)
@given(cloud=clouds, scale_exp=st.integers(-6, 4), threshold_level=st.integers(0, 9),
       min_points=st.integers(1, 6), factor=st.sampled_from([0.5, 1.0, 1.5, 2.5, 4.0]))
def test_regions_match_brute_force(cloud: tuple[list, list], scale_exp: int, threshold_level: int,
                                   min_points: int, factor: float) -> None:
    coords, levels = cloud
    points = (np.array(coords, np.float64) * 2.0 ** scale_exp).astype(np.float32)
    scores = (np.array(levels, np.float32) / np.float32(10.0)).astype(np.float32)
    threshold = threshold_level / 10.0 - 0.05  # halfway between score levels: no score ties the threshold
    found = find_regions(points, scores, threshold, min_points, factor, -0.1, 1.0)

    h = brute_spacing(points)
    assert found.spacing == h
    hot = np.flatnonzero(scores.astype(np.float64) > threshold)
    r = factor * h
    expected = [g for g in brute_components(points, hot, r * r) if len(g) >= min_points]
    assert sorted(r_.indices.tolist() for r_ in found.regions) == sorted(expected)

    assert found.labels.dtype == np.int32 and found.labels.shape == (len(points),)
    assert [g.id for g in found.regions] == list(range(1, len(found.regions) + 1))
    for region in found.regions:
        assert region.num_points >= min_points
        assert (scores[region.indices].astype(np.float64) > threshold).all()
        np.testing.assert_array_equal(np.flatnonzero(found.labels == region.id), region.indices)
        assert region.max_score == float(scores[region.indices].max())
        assert region.seed_index == int(region.indices[np.argmax(scores[region.indices])])
    assert (found.labels > 0).sum() == sum(g.num_points for g in found.regions)
    keys = [(-g.max_score, -g.num_points, g.seed_index) for g in found.regions]
    assert keys == sorted(keys)


@settings(max_examples=100, deadline=None, database=None)
@given(cloud=clouds, scale_exp=st.integers(-8, 6))
def test_spacing_matches_brute_force(cloud: tuple[list, list], scale_exp: int) -> None:
    points = (np.array(cloud[0], np.float64) * 2.0 ** scale_exp).astype(np.float32)
    assert point_spacing(points) == brute_spacing(points)
    # order and duplicates do not matter
    shuffled = np.random.default_rng(0).permutation(np.concatenate([points, points[: len(points) // 2]]))
    assert point_spacing(shuffled) == brute_spacing(points)
