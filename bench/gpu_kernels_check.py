"""CUDA kernels vs CPU kernels on full-size clouds (the GPU check's step 2; needs an NVIDIA GPU).

Renders an organized 336x336 object (mvtec9 settings) and an unorganized 112,896-point cloud (Real3D
settings) on the CPU (numba) and on the GPU (numba.cuda), compares images, pixels and visibility, then
back-projects the same random maps with both kernels and compares the point scores. Times each kernel
after a warm-up (median of 5). Exit 1 when a comparison fails.

    python bench/gpu_kernels_check.py [--json OUT.json]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Differences allowed between the kernels: a few pixels may take another point where two points tie in depth.
MAX_PIXEL_MISMATCH = 0.001  # fraction of image pixels
MAX_SCORE_DIFF = 1e-5


def _median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check(name: str, points: np.ndarray, settings: Any) -> dict[str, Any]:
    from numba import cuda

    from align3d_rt.kernels import backproject, backproject_cuda
    from align3d_rt.render import render_views

    cpu = render_views(points, settings)
    gpu = render_views(points, settings, device="cuda")
    row: dict[str, Any] = {"cloud": name, "points": int(points.shape[0])}
    row["image_pixel_mismatch"] = float(np.mean(np.any(cpu.images != gpu.images, axis=-1)))
    row["visible_mismatch"] = float(np.mean(cpu.visible != gpu.visible))
    row["pixels_equal"] = bool(np.array_equal(cpu.pixels, gpu.pixels))
    rng = np.random.default_rng(0)
    v, n = cpu.pixels.shape[:2]
    maps = rng.random((1, v, 2, 24, 24), dtype=np.float32)
    s = int(cpu.images.shape[1])
    ref = backproject(maps, cpu.pixels[None], cpu.visible[None], image_size=s)
    got = backproject_cuda(maps, cpu.pixels[None], cpu.visible[None], image_size=s)
    row["score_max_abs_diff"] = float(np.abs(ref - got).max())
    row["render_cpu_s"] = _median_time(lambda: render_views(points, settings))
    row["render_cuda_s"] = _median_time(lambda: (render_views(points, settings, device="cuda"), cuda.synchronize()))
    row["backproject_cpu_s"] = _median_time(
        lambda: backproject(maps, cpu.pixels[None], cpu.visible[None], image_size=s))
    row["backproject_cuda_s"] = _median_time(
        lambda: backproject_cuda(maps, cpu.pixels[None], cpu.visible[None], image_size=s))
    row["ok"] = (row["image_pixel_mismatch"] <= MAX_PIXEL_MISMATCH and row["visible_mismatch"] <= MAX_PIXEL_MISMATCH
                 and row["score_max_abs_diff"] <= MAX_SCORE_DIFF)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from align3d_rt.render import settings_for
    from align3d_rt.render.shapes import organized_object, unorganized_cloud
    from align3d_rt.runtime.devices import cuda_available

    if not cuda_available():
        print("gpu_kernels_check: no usable CUDA GPU", file=sys.stderr)
        return 2
    rows = [check("organized 336x336 (mvtec9)", organized_object(336)[0], settings_for("mvtec3d", "bagel")),
            check("unorganized 112896 (real3d)", unorganized_cloud(112_896), settings_for("real3d", ""))]
    for r in rows:
        print(f"{r['cloud']}: pixels differ {r['image_pixel_mismatch']:.2e}, visibility differs "
              f"{r['visible_mismatch']:.2e}, scores max abs diff {r['score_max_abs_diff']:.1e}; render cpu "
              f"{r['render_cpu_s'] * 1e3:.1f} ms / cuda {r['render_cuda_s'] * 1e3:.1f} ms, back-project cpu "
              f"{r['backproject_cpu_s'] * 1e3:.1f} ms / cuda {r['backproject_cuda_s'] * 1e3:.1f} ms: "
              f"{'ok' if r['ok'] else 'MISMATCH'}")
    if args.json:
        from align3d_rt.io_utils import write_json_atomic

        write_json_atomic(args.json, rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
