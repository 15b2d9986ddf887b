"""Rendering benchmark: 9 views, splat (numba) vs open3d (reference), points -> images + correspondences.

Clouds: (a) an organized 336x336 MVTec-like object after preprocessing (~88k valid points),
(b) an unorganized 112,896-point Real3D-AD-like cloud. What each renderer does per call (9 views):
  splat    ours (render/splat.py): one numba thread per view projects every point with Open3D's default
           camera into a point z-buffer (its correspondence pixel, visibility) and a square-splat
           z-buffer at 336x336, then shades gray from normals computed on the splat z-buffer
           (screen space, no neighbour search);
  open3d   the reference look (render/open3d_ref.py): Open3D normals (hybrid KD-tree search), the legacy
           Visualizer renders each view at the reference window (1024x1024), the float screen buffer
           is read back and downsized to 336 with bicubic resampling; correspondences are projected
           with the camera Open3D reports.
Both are warmed up first (numba compile/cache, the hidden Open3D window) and both are timed over the
same number of calls (best of SPLAT_REPEATS each), so the ratio compares like with like.

    .venv/bin/python -m pytest bench/bench_render.py --benchmark-only -s
    .venv/bin/python bench/bench_render.py            # standalone table
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from align3d_rt.render import RenderSettings, render_views, settings_for
from align3d_rt.render.shapes import organized_object, unorganized_cloud

# Best of 30 calls (about 1 s): on this shared 2-vCPU machine a render runs about 1.5x slower for
# stretches of several calls at a time (both threads on one vCPU); the minimum is the quiet figure.
SPLAT_REPEATS = 30
SPLAT_WARMUP = 3


def cases() -> dict[str, tuple[np.ndarray, RenderSettings]]:
    org = organized_object(336)[0]
    return {
        "organized 336x336 (mvtec9)": (org, settings_for("mvtec3d", "bagel")),
        "unorganized 112896 (paper9)": (unorganized_cloud(112_896), settings_for("real3d", "")),
    }


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(splat_repeats: int = SPLAT_REPEATS, open3d_repeats: int = SPLAT_REPEATS
            ) -> list[tuple[str, int, float, float]]:
    rows = []
    for name, (pts, s) in cases().items():
        o3d_s = replace(s, renderer="open3d")
        for _ in range(SPLAT_WARMUP):  # compile / load the numba cache, start the thread pool
            render_views(pts, s)
        t_splat = _best(lambda pts=pts, s=s: render_views(pts, s), splat_repeats)
        render_views(pts, o3d_s)  # warm-up: the hidden window, Open3D's first full-size render
        t_o3d = _best(lambda pts=pts, o3d_s=o3d_s: render_views(pts, o3d_s), open3d_repeats)
        rows.append((name, int(pts.shape[0]), t_splat, t_o3d))
    return rows


def main() -> int:
    import numba

    print(f"9 views, 336x336, points -> images + correspondences (numba threads: {numba.get_num_threads()}); "
          f"splat: numba z-buffer splats at 336; open3d: reference Visualizer at 1024 + Open3D normals + "
          f"bicubic downsize; best of {SPLAT_REPEATS} warmed-up calls each")
    print(f"{'cloud':30s} {'points':>8s} {'splat ms':>9s} {'open3d ms':>10s} {'open3d/splat':>13s}")
    for name, n, ts, to in measure():
        print(f"{name:30s} {n:8d} {ts * 1e3:9.1f} {to * 1e3:10.1f} {to / ts:12.1f}x")
    return 0


# ---- pytest-benchmark -------------------------------------------------------------------------
_RESULTS: dict[tuple[str, str], float] = {}


def _case(key: str) -> tuple[np.ndarray, RenderSettings]:
    return cases()[key]


def _params() -> list[str]:
    return ["organized 336x336 (mvtec9)", "unorganized 112896 (paper9)"]


try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module")
    def clouds() -> dict[str, tuple[np.ndarray, RenderSettings]]:
        return cases()

    @pytest.mark.parametrize("key", _params())
    def test_splat(benchmark: Any, clouds: dict[str, tuple[np.ndarray, RenderSettings]], key: str) -> None:
        pts, s = clouds[key]
        render_views(pts, s)
        result = benchmark.pedantic(render_views, args=(pts, s), rounds=SPLAT_REPEATS, iterations=1,
                                    warmup_rounds=SPLAT_WARMUP)
        assert result.images.shape == (9, 336, 336, 3)
        _RESULTS[("splat", key)] = benchmark.stats.stats.min

    @pytest.mark.parametrize("key", _params())
    def test_open3d(benchmark: Any, clouds: dict[str, tuple[np.ndarray, RenderSettings]], key: str) -> None:
        pytest.importorskip("open3d")
        pts, s = clouds[key]
        o3d_s = replace(s, renderer="open3d")
        render_views(pts[:1000], o3d_s)  # the hidden window
        result = benchmark.pedantic(render_views, args=(pts, o3d_s), rounds=SPLAT_REPEATS, iterations=1,
                                    warmup_rounds=1)
        assert result.images.shape == (9, 336, 336, 3)
        _RESULTS[("open3d", key)] = benchmark.stats.stats.min

    @pytest.fixture(scope="module", autouse=True)
    def print_ratios() -> Iterator[None]:
        """After the module (also under --benchmark-only): print open3d/splat for each cloud."""
        yield
        for key in _params():
            if ("splat", key) in _RESULTS and ("open3d", key) in _RESULTS:
                ts, to = _RESULTS[("splat", key)], _RESULTS[("open3d", key)]
                sys.__stdout__.write(f"\n{key}: splat {ts * 1e3:.1f} ms, open3d {to * 1e3:.1f} ms, "
                                     f"open3d/splat {to / ts:.1f}x")
        sys.__stdout__.write("\n")

if __name__ == "__main__":
    sys.exit(main())
