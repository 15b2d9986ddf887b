"""Farthest-point sampling speed at Real3D-AD size: 500k points on the unit sphere -> 112,896.

Run: .venv/bin/python -m pytest bench/test_bench_fps.py --benchmark-only (target about 1.5 s on 2 cores).
"""
from __future__ import annotations

import numpy as np

from align3d_rt.data.fps import farthest_point_sampling
from align3d_rt.data.real3d import NUM_POINTS


def test_fps_500k(benchmark) -> None:  # noqa: ANN001 - pytest-benchmark fixture
    rng = np.random.default_rng(0)
    d = rng.normal(size=(500_000, 3))
    pts = d / np.linalg.norm(d, axis=1, keepdims=True)
    farthest_point_sampling(pts[:5000], 100)  # compile outside the timing
    idx = benchmark.pedantic(farthest_point_sampling, args=(pts, NUM_POINTS), rounds=3, warmup_rounds=0)
    assert len(np.unique(idx)) == NUM_POINTS
