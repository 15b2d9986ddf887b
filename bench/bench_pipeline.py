"""End-to-end pipeline timing per stage (render, encode, back-project) for one sample on the CPU.

Uses the real 'ViT-L-14-336' architecture with random weights (load_clip weights='random') inside a
run directory with a random aligner and random text embeddings, so no weights download is needed;
the timing is the architecture's, the scores are meaningless. Everything is warmed up before timing:
the numba kernels on a small cloud, then one full untimed ``score`` (the encoder's first call allocates
and, for torch, picks its kernels: it is much slower than the following ones).

    .venv/bin/python bench/bench_pipeline.py [--clip ViT-L-14-336] [--preset paper9] [--points 112896]
                                             [--repeat 1] [--device auto] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from align3d_rt.data.sample import PointCloudSample


def height_field_cloud(n_points: int, seed: int = 0) -> PointCloudSample:
    """An organized-scan-like cloud: a bumpy surface with a dent, n_points points (metres)."""
    from align3d_rt.data.sample import PointCloudSample

    side = int(np.ceil(np.sqrt(n_points)))
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side))
    z = 0.25 * np.exp(-(u ** 2 + v ** 2) * 1.5) - 0.05 * np.exp(-((u - 0.3) ** 2 + v ** 2) * 40)
    z += 0.002 * rng.standard_normal(z.shape)
    pts = (np.stack([u.ravel(), v.ravel(), z.ravel()], 1) * 0.05).astype(np.float32)[:n_points]
    idx = np.arange(pts.shape[0], dtype=np.int64)
    return PointCloudSample(points=pts, category="bagel", dataset="mvtec3d", source="bench.npy",
                            grid_shape=(side, side), grid_index=idx)


def warm_up_kernels(detector, sample) -> None:  # noqa: ANN001
    """Compile/load the numba renderer and back-projection on a tiny cloud (no encoder call)."""
    from align3d_rt.kernels import backproject

    small = type(sample)(points=sample.points[:: max(1, sample.num_points // 500)].copy(), category=sample.category,
                         dataset=sample.dataset)
    r = detector.render(small)
    g = 24
    maps = np.zeros((1, r.pixels.shape[0], 2, g, g), np.float32)
    backproject(maps, r.pixels[None], r.visible[None], image_size=int(r.images.shape[1]), fusion_weight=0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="ViT-L-14-336")
    ap.add_argument("--preset", default="paper9", help="view preset (9 views)")
    ap.add_argument("--points", type=int, default=112_896)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--view-chunk", type=int, default=9, help="views per encoder call")
    ap.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = ap.parse_args(argv)

    import torch

    from align3d_rt.runtime.detector import Detector
    from align3d_rt.train.random_run import random_run_dir

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        run = random_run_dir(Path(tmp) / "run", clip=args.clip, clip_weights="random", dataset="mvtec3d",
                             category="bagel", preset=args.preset)
        detector = Detector.from_run(run, device=args.device, view_chunk=args.view_chunk)
        sample = height_field_cloud(args.points)
        with detector:
            setup = time.perf_counter() - t0
            warm_up_kernels(detector, sample)
            t_warm = time.perf_counter()
            detector.score([sample], keep_render=False)  # the encoder's first call, untimed
            warmup = time.perf_counter() - t_warm
            rows = []
            for _ in range(args.repeat):
                t1 = time.perf_counter()
                res = detector.score([sample], keep_render=False)[0]
                total = time.perf_counter() - t1
                rows.append({**{k: res.timings[k] for k in ("render", "encode", "backproject")}, "total": total})
    best = min(rows, key=lambda r: r["total"])
    report = {
        "clip": args.clip, "weights": "random", "device": args.device, "preset": args.preset,
        "views": detector.render_settings.num_views, "points": sample.num_points,
        "torch_threads": torch.get_num_threads(),
        "setup_seconds": setup, "warmup_seconds": warmup, "repeat": args.repeat, "best": best, "runs": rows,
    }
    print(f"pipeline bench: {args.clip} (random weights), {report['views']} views, {sample.num_points} points, "
          f"device {args.device}, torch threads {report['torch_threads']}")
    for k in ("render", "encode", "backproject", "total"):
        print(f"  {k:12s} {best[k]:8.3f} s")
    print(f"  (setup: building the model and run dir {setup:.1f} s; untimed warm-up score {warmup:.1f} s)")
    if args.json:
        from align3d_rt.io_utils import write_json_atomic

        write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
