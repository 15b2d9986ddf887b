"""What decisions + regions (runtime-spec §13.3-13.4) add to the end-to-end time of one cloud on the CPU.

One 112,896-point cloud (336 x 336, an organized height field with a dent) is scored end to end
(render 9 views, encode, back-project, fuse, object score) with the tiny random CLIP run
('align3d-tiny'), then optionally decided (``decisions.decide``: normalisation, point spacing,
regions). The tiny CLIP is used because the question is the *added* time of the decision step,
which does not depend on the encoder; its encoder is far faster than ViT-L-14-336, so the ratio
measured here is an upper bound of the ratio with the real encoder. With ``--vitl`` the run also
times one forward of 9 views of ViT-L-14-336 (random weights) to put the decision's absolute time
against a real encode of the same run.

The calibration puts the point threshold at the cloud's own 95th percentile of fused scores, so 5 %
of the points are hot and form regions (more work than a good part, which has none).

Warm-up first (numba kernels, one untimed score and decide), then ``--rounds`` rounds, each timing
"score" and "score + decide" once in alternating order (round-robin); reported: the medians, their
ratio, and the range of the per-round ratios.

    .venv/bin/python bench/bench_decisions.py [--points 112896] [--rounds 7] [--vitl] [--json OUT.json]

Measured 2026-12-02 (2 shared vCPUs; 5,645 hot points, 49 regions). 23:12 UTC, load average 1.8-2.4:
decide alone 32.8 ms (29.6-57.7 over the rounds); score + decide / score 1.04 (per round 0.47-1.06).
23:09-23:10 UTC, load 2.7-3.3: this branch one step earlier 35 ms (33-37) and 41 ms (38-76); the code
before the grid spacing search (main 4aca273, same bench, runs in between) 167 ms (165-171) and 166 ms
(163-245): ~5x faster, same results. 33 ms is 0.55 % of one OpenVINO int8 ViT-L-14-336 encode of the
9 views (6.0 s) and ~0.1 % of torch fp32 (27.5 s). The tiny CLIP's own score time swings between
0.14 s and 0.94 s with the load, so the score + decide ratio mostly measures that swing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import height_field_cloud, warm_up_kernels


def hot_calibration(fused: np.ndarray, object_score: float, source: dict, hot_share: float = 0.05):  # noqa: ANN201
    """A calibration whose point threshold is the (1 - hot_share) quantile of ``fused``."""
    from align3d_rt.eval.calibration import fit_calibration

    cut = float(np.quantile(fused, 1.0 - hot_share))
    parts = [np.minimum(fused, cut - 1e-6 * i).astype(np.float32) for i in range(19)]
    objects = [object_score - 0.01 + 0.001 * i for i in range(19)]
    return fit_calibration(objects, parts, product="bench", source=source)


def vitl_encode_seconds(views: np.ndarray, tmp: Path) -> float:
    """One forward of the 9 views through ViT-L-14-336 with random weights (torch fp32, CPU)."""
    from align3d_rt.runtime.detector import Detector
    from align3d_rt.train.random_run import random_run_dir

    run = random_run_dir(tmp / "vitl", clip="ViT-L-14-336", clip_weights="random", dataset="mvtec3d",
                         category="bagel", preset="paper9")
    detector = Detector.from_run(run, device="cpu", view_chunk=9)
    with detector:
        runner = detector.runner  # the encoder alone
        t0 = time.perf_counter()
        runner.infer(views)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=112_896)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--vitl", action="store_true", help="also time one ViT-L-14-336 forward of the 9 views")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from align3d_rt.runtime.decisions import decide
    from align3d_rt.runtime.detector import Detector
    from align3d_rt.train.random_run import random_run_dir

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_decisions_") as tmp:
        run = random_run_dir(Path(tmp) / "run", dataset="mvtec3d", category="bagel", preset="paper9")
        detector = Detector.from_run(run, device="cpu", view_chunk=9)
        sample = height_field_cloud(args.points)
        with detector:
            warm_up_kernels(detector, sample)
            first = detector.score([sample], keep_render=True)[0]  # untimed: the encoder's first call
            cal = hot_calibration(first.fused, first.object_score, {"kind": "run", "run_id": "0" * 64})
            warm = decide(sample.points, first.fused, first.object_score, cal)  # untimed warm-up
            plain, decided, decide_only = [], [], []
            for r in range(args.rounds):
                for with_decision in ((False, True) if r % 2 == 0 else (True, False)):
                    t0 = time.perf_counter()
                    res = detector.score([sample], keep_render=False)[0]
                    t1 = time.perf_counter()
                    if with_decision:
                        decide(sample.points, res.fused, res.object_score, cal)
                        t2 = time.perf_counter()
                        decided.append(t2 - t0)
                        decide_only.append(t2 - t1)
                    else:
                        plain.append(t1 - t0)
            encode = first.timings.get("encode")
            vitl = vitl_encode_seconds(first.render.images, Path(tmp)) if args.vitl else None
    load_after = os.getloadavg()
    ratios = [d / p for d, p in zip(decided, plain, strict=True)]
    med_p, med_d, med_dec = statistics.median(plain), statistics.median(decided), statistics.median(decide_only)
    report = {
        "points": sample.num_points, "views": 9, "encoder": "align3d-tiny (random)", "rounds": args.rounds,
        "hot_points": int((first.fused > cal.point.threshold).sum()), "regions": len(warm.regions.regions),
        "spacing": warm.regions.spacing, "score_s": plain, "score_decide_s": decided, "decide_s": decide_only,
        "median_score_s": med_p, "median_score_decide_s": med_d, "median_decide_s": med_dec,
        "ratio_of_medians": med_d / med_p, "ratio_range": [min(ratios), max(ratios)],
        "tiny_encode_first_call_s": encode, "vitl_encode_9_views_s": vitl,
        "load_average_before": load_before, "load_average_after": load_after,
    }
    print(f"decisions bench: {sample.num_points} points, 9 views, tiny CLIP, {args.rounds} rounds, "
          f"{report['hot_points']} hot points in {report['regions']} regions (h = {warm.regions.spacing:.3g})")
    print(f"  score            median {med_p:.3f} s  ({min(plain):.3f}-{max(plain):.3f})")
    print(f"  score + decide   median {med_d:.3f} s  ({min(decided):.3f}-{max(decided):.3f})")
    print(f"  decide alone     median {med_dec * 1e3:.1f} ms "
          f"({min(decide_only) * 1e3:.1f}-{max(decide_only) * 1e3:.1f})")
    print(f"  ratio {med_d / med_p:.3f} (per-round {min(ratios):.3f}-{max(ratios):.3f}); load {load_before[0]:.1f} -> "
          f"{load_after[0]:.1f}")
    if vitl is not None:
        print(f"  ViT-L-14-336 (random) one forward of 9 views: {vitl:.1f} s; decide alone = "
              f"{100 * med_dec / vitl:.2f} % of it")
    if args.json:
        from align3d_rt.io_utils import write_json_atomic

        write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
