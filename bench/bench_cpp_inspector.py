"""C++ inspector vs the Python OpenVINO backend, end to end (file -> scores), one 9-view sample.

Both sides score the same .npy file with the same OpenVINO bundle at the same compute precision
(f32 by default). Python: ``Detector.from_bundle(backend="openvino")``, ``load_point_file`` +
``score`` per sample. C++: ``align3d-inspect`` on the file repeated R+1 times in one process (one
bundle load + compile), its per-sample stage timings (read, render, encode, back-project, score);
the first sample of each side is a warm-up and is dropped. Figures are medians over the repeats,
both sides measured in the same run, so the C++/Python ratio is comparable on a busy machine.
The target is C++ non-encoder time <= 10% of its encoder time.

    .venv/bin/python bench/bench_cpp_inspector.py [--clip ViT-L-14-336] [--points 112896] [--repeat 3]
                                                  [--precision-hint f32] [--threads N] [--json OUT.json]

The bundle is a random-weights run of --clip exported with `export --format openvino`, cached in
build/bench/ (the timing is the architecture's; the scores are meaningless).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
STAGES = ("read", "render", "encode", "backproject", "score")


def make_bundle(clip: str) -> Path:
    from align3d_rt.cli import main
    from align3d_rt.train.random_run import random_run_dir

    out = ROOT / "build" / "bench" / f"bundle-{clip}"
    if not (out / "manifest.json").is_file():
        run = random_run_dir(ROOT / "build" / "bench" / f"run-{clip}", clip=clip, clip_weights="random",
                             dataset="mvtec3d", category="bagel", preset="mvtec9")
        if main(["export", "--run", str(run), "--out", str(out), "--format", "openvino"]) != 0:
            raise SystemExit(f"export of {clip} failed")
    return out


def height_field(n_points: int, seed: int = 0) -> np.ndarray:
    """A scan-like bumpy surface with a dent, n_points points (metres), as bench_pipeline uses."""
    side = int(np.ceil(np.sqrt(n_points)))
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side))
    z = 0.25 * np.exp(-(u ** 2 + v ** 2) * 1.5) - 0.05 * np.exp(-((u - 0.3) ** 2 + v ** 2) * 40)
    z += 0.002 * rng.standard_normal(z.shape)
    return (np.stack([u.ravel(), v.ravel(), z.ravel()], 1) * 0.05).astype(np.float32)[:n_points]


def time_cpp(build: Path, bundle: Path, cloud: Path, repeat: int, hint: str, threads: int | None,
             out: Path) -> dict:
    cmd = [str(build / "cpp" / "align3d-inspect"), str(bundle), *[str(cloud)] * (repeat + 1), "--out", str(out),
           "--precision-hint", hint]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"align3d-inspect failed: {proc.stderr}")
    samples = json.loads((out / "scores.json").read_text())["samples"]
    rows = [samples[k]["timings"] for k in sorted(samples) if k != cloud.stem]  # drop the warm-up sample
    med = {s: statistics.median(r[s] for r in rows) for s in STAGES}
    totals = [sum(r[s] for s in STAGES) for r in rows]
    return {"stages": med, "total": statistics.median(totals), "total_range": [min(totals), max(totals)],
            "process_wall_incl_load_compile": wall, "scores": np.load(out / f"{cloud.stem}.scores.npy")}


def time_python(bundle: Path, cloud: Path, repeat: int, hint: str, threads: int | None) -> dict:
    from align3d_rt.data.readers import load_point_file
    from align3d_rt.runtime.detector import Detector

    opts = {"precision_hint": hint, **({"threads": threads} if threads else {})}
    det = Detector.from_bundle(bundle, backend="openvino", device="cpu", **opts)
    totals, stages, scores = [], [], None
    with det:
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            sample = load_point_file(cloud)
            res = det.score([sample], keep_render=False)[0]
            total = time.perf_counter() - t0
            if i:
                totals.append(total)
                stages.append({k: float(res.timings[k]) for k in ("render", "encode", "backproject")})
            scores = res.point_scores
    return {"total": statistics.median(totals), "total_range": [min(totals), max(totals)],
            "stages": {k: statistics.median(s[k] for s in stages) for k in ("render", "encode", "backproject")},
            "scores": scores}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="ViT-L-14-336")
    ap.add_argument("--points", type=int, default=112_896)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--precision-hint", default="f32", choices=("auto", "f32", "bf16", "f16"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import cpp_build

    build = cpp_build.build("cpp")
    bundle = make_bundle(args.clip)
    with tempfile.TemporaryDirectory(prefix="bench_cpp_") as tmp:
        cloud = Path(tmp) / "cloud.npy"
        np.save(cloud, height_field(args.points))
        py = time_python(bundle, cloud, args.repeat, args.precision_hint, args.threads)
        cpp = time_cpp(build, bundle, cloud, args.repeat, args.precision_hint, args.threads, Path(tmp) / "out")
    st = cpp["stages"]
    non_encoder = sum(st[s] for s in STAGES if s != "encode")
    report = {
        "clip": args.clip, "points": args.points, "views": 9, "repeat": args.repeat,
        "precision_hint": args.precision_hint, "bundle": str(bundle),
        "cpp_end_to_end_s": cpp["total"], "cpp_end_to_end_range_s": cpp["total_range"],
        "cpp_stages_s": st, "cpp_non_encoder_s": non_encoder,
        "cpp_non_encoder_over_encoder": non_encoder / st["encode"],
        "cpp_process_wall_incl_load_compile_s": cpp["process_wall_incl_load_compile"],
        "python_end_to_end_s": py["total"], "python_end_to_end_range_s": py["total_range"],
        "python_stages_s": py["stages"], "speedup_python_over_cpp": py["total"] / cpp["total"],
        "max_abs_point_score_diff": float(np.abs(cpp["scores"] - py["scores"]).max()),
    }
    for k, v in report.items():
        print(f"{k:40s} {v}")
    target = report["cpp_non_encoder_over_encoder"] <= 0.10
    print(f"target C++ non-encoder <= 10% of encoder: {'met' if target else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
