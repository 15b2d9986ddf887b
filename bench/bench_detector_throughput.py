"""Detector throughput: the pipelined end-to-end run (files on disk -> written scores) vs the encoder alone.

Generates N organized-scan-like clouds (a 336x336 height field with a bump and a dent, cut to a disc:
~88.7k points each) as .npy files, exports an ONNX Runtime bundle of the run (random weights: the
timing is the architecture's, the scores are meaningless; or reuses --bundle), then in ONE process:

  warm-up        one cloud end to end (numba kernels, ORT session, output writing)
  encoder alone  the N clouds are loaded and rendered first (untimed for this figure), then
                 runner.infer is timed on exactly those views, one cloud (its 9 views) per call,
                 as the pipeline calls it at batch 1
  end to end     Detector.score_stream over the N files at --batch-size: load, render, encode,
                 back-project, score on the detector's three threads, and KEY.scores.npy /
                 KEY.points.npy written by the caller (like ``align3d-rt infer --no-ply --no-png``)

With --repeats R the two timed runs alternate R times (both see the same machine load) and the
ranges are reported. The stage times are also measured one after the other, in isolation (load,
render, encode, back-project + object score, write); their sum per sample is what a serial loop
would cost, the difference to the end-to-end time is what the pipelining hides.
Target: end to end / encoder alone <= 1.3.

    .venv/bin/python bench/bench_detector_throughput.py [--n 20] [--clip ViT-L-14-336] [--precision int8]
        [--bundle DIR] [--batch-size 1] [--repeats 1] [--json OUT.json] [--workdir DIR]

--bundle DIR reuses the bundle there, or exports into DIR when it holds none (kept for the next run).
--clip align3d-tiny makes a fast run (seconds); the default ViT-L-14-336 int8 export takes minutes.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET_RATIO = 1.3
DATASET, CATEGORY = "mvtec3d", "bagel"  # render settings (point size, 'mvtec9' views) as for MVTec 3D-AD
GRID_SIDE = 336


# ---- inputs -------------------------------------------------------------------------------------
def height_field_points(seed: int = 0, side: int = GRID_SIDE) -> np.ndarray:
    """(N,3) float32 metres: a side x side height field (bump + dent + noise) cut to the inscribed disc.

    Like an MVTec 3D-AD scan after background removal: ~pi/4 of the grid, 88,668 points at side 336.
    The bump and the dent move with the seed so every cloud renders differently."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side))
    cx, cy = rng.uniform(-0.2, 0.2, 2)
    dx, dy = rng.uniform(-0.5, 0.5, 2)
    z = 0.25 * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) * 1.5) - 0.05 * np.exp(-((u - dx) ** 2 + (v - dy) ** 2) * 40)
    z += 0.002 * rng.standard_normal(z.shape)
    keep = (u ** 2 + v ** 2 <= 1.0).ravel()
    return (np.stack([u.ravel(), v.ravel(), z.ravel()], 1)[keep] * 0.05).astype(np.float32)


def write_clouds(folder: Path, n: int, side: int = GRID_SIDE) -> list[tuple[Path, str]]:
    """N clouds as folder/cloud_XXX.npy; returns (path, output key) pairs as ``align3d-rt infer`` collects them."""
    from align3d_rt.data.files import collect_files
    from align3d_rt.io_utils import save_npy_atomic

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"cloud_{i:03d}.npy"
        save_npy_atomic(path, height_field_points(seed=i, side=side))
        paths.append(path)
    return collect_files(paths)


def write_outputs(out_dir: Path, key: str, result: Any) -> None:
    """What ``align3d-rt infer --no-ply --no-png`` writes per sample: KEY.scores.npy and KEY.points.npy."""
    from align3d_rt.io_utils import save_npy_atomic

    save_npy_atomic(out_dir / f"{key}.scores.npy", np.asarray(result.point_scores, dtype=np.float32))
    save_npy_atomic(out_dir / f"{key}.points.npy", np.asarray(result.sample.points, dtype=np.float32))


# ---- bundle -------------------------------------------------------------------------------------
def ensure_bundle(bundle: Path | None, workdir: Path, clip: str, precision: str) -> tuple[Path, bool, float]:
    """(bundle dir, exported now?, export seconds): reuse ``bundle`` when it holds one, else export
    a random-weights run of ``clip`` there (or under workdir)."""
    from align3d_rt.artifacts.bundle import MANIFEST_NAME

    if bundle is not None and (bundle / MANIFEST_NAME).is_file():
        return bundle, False, 0.0
    from align3d_rt.export.onnx_export import export_bundle
    from align3d_rt.train.random_run import random_run_dir

    target = bundle if bundle is not None else workdir / f"bundle_{clip}_{precision}"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_detector_run_") as tmp:
        run = random_run_dir(Path(tmp) / "run", clip=clip, clip_weights="random", dataset=DATASET, category=CATEGORY)
        export_bundle(run, target, precision=precision)
    return target, True, time.perf_counter() - t0


# ---- the three measurements ---------------------------------------------------------------------
def run_stream(detector: Any, files: list[tuple[Path, str]], out_dir: Path, batch_size: int) -> dict[str, Any]:
    """Time score_stream from files on disk to written outputs; per-sample stage times on the side."""
    from align3d_rt.cli.infer import sample_loader
    from align3d_rt.errors import InputError

    out_dir.mkdir(parents=True, exist_ok=True)
    base_load = sample_loader(DATASET, CATEGORY)
    load_s: dict[str, float] = {}

    def load(item: tuple[Path, str]) -> Any:
        t0 = time.perf_counter()
        sample = base_load(item)
        load_s[item[1]] = time.perf_counter() - t0
        return sample

    stages: dict[str, list[float]] = {k: [] for k in ("load", "render", "encode", "backproject", "write")}
    failed: dict[str, str] = {}
    finite = True
    scored = 0
    t0 = time.perf_counter()
    for (_path, key), result in detector.score_stream(files, load=load, batch_size=batch_size, keep_render=False):
        if isinstance(result, InputError):
            failed[key] = str(result)
            continue
        tw = time.perf_counter()
        write_outputs(out_dir, key, result)
        stages["write"].append(time.perf_counter() - tw)
        finite = finite and bool(np.isfinite(result.point_scores).all()) and bool(np.isfinite(result.object_score))
        scored += 1
        t = result.timings
        stages["load"].append(load_s.get(key, 0.0))
        stages["render"].append(t["render"] - load_s.get(key, 0.0))  # timings['render'] includes the load
        stages["encode"].append(t["encode"])
        stages["backproject"].append(t["backproject"])
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "scored": scored, "failed": failed, "finite": finite,
            "stages_mean_s": {k: (statistics.fmean(v) if v else 0.0) for k, v in stages.items()}}


def prepare_views(detector: Any, files: list[tuple[Path, str]]) -> tuple[list[Any], list[Any], dict[str, float]]:
    """Load and render every cloud one after the other (outside the encoder timing); their isolated times."""
    from align3d_rt.cli.infer import sample_loader

    load = sample_loader(DATASET, CATEGORY)
    samples, renders, t_load, t_render = [], [], [], []
    for item in files:
        t0 = time.perf_counter()
        sample = load(item)
        t1 = time.perf_counter()
        renders.append(detector.render(sample))
        t_render.append(time.perf_counter() - t1)
        t_load.append(t1 - t0)
        samples.append(sample)
    return samples, renders, {"load": statistics.fmean(t_load), "render": statistics.fmean(t_render)}


def encoder_alone(runner: Any, renders: list[Any]) -> tuple[float, list[Any]]:
    """Wall seconds of runner.infer over every cloud's views, one cloud per call; the outputs."""
    outs = []
    t0 = time.perf_counter()
    for r in renders:
        outs.append(runner.infer(r.images))
    return time.perf_counter() - t0, outs


def isolated_finish(detector: Any, samples: list[Any], renders: list[Any], outs: list[Any], out_dir: Path
                    ) -> dict[str, float]:
    """Back-project + object score, then write, each timed alone (mean seconds per sample)."""
    from align3d_rt import scoring
    from align3d_rt.kernels import backproject
    from align3d_rt.runtime.detector import ScoreResult

    out_dir.mkdir(parents=True, exist_ok=True)
    t_back, t_write = [], []
    for sample, r, enc in zip(samples, renders, outs, strict=True):
        t0 = time.perf_counter()
        maps = enc.patch_maps
        pts = backproject(maps[None], r.pixels[None], r.visible[None], image_size=int(r.images.shape[1]),
                          fusion_weight=detector.fusion_weight)[0]
        obj = scoring.object_score(pts[:, 2], enc.global_probs, detector.fusion_weight)
        t1 = time.perf_counter()
        res = ScoreResult(sample_id=sample.sample_id, point_scores=pts, object_score=obj,
                          global_probs=enc.global_probs, sample=sample)
        write_outputs(out_dir, Path(sample.source).stem, res)
        t_write.append(time.perf_counter() - t1)
        t_back.append(t1 - t0)
    return {"backproject": statistics.fmean(t_back), "write": statistics.fmean(t_write)}


# ---- machine ------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_info(runner: Any) -> dict[str, Any]:
    import numba

    info: dict[str, Any] = {"numba": numba.get_num_threads(), "numba_threading_layer": _numba_layer()}
    threads = getattr(runner, "threads", None)
    info["onnxruntime_intra_op"] = int(threads) if threads else "default (one per core)"
    if "torch" in sys.modules:  # only when this process exported the bundle
        info["torch"] = sys.modules["torch"].get_num_threads()
    return info


def _numba_layer() -> str:
    import numba

    try:
        return str(numba.threading_layer())
    except ValueError:  # no parallel kernel has run yet
        return "unset"


def _range(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# ---- main ---------------------------------------------------------------------------------------
def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from align3d_rt.runtime.detector import Detector
    from align3d_rt.versions import library_versions

    t0 = time.perf_counter()
    files = write_clouds(workdir / "clouds", args.n)
    bundle, exported, export_s = ensure_bundle(args.bundle, workdir, args.clip, args.precision)
    detector = Detector.from_bundle(bundle, backend=args.backend, device=args.device)
    manifest_clip = detector.info.get("clip_name")
    if not exported and manifest_clip and manifest_clip != args.clip:
        print(f"note: reusing {bundle} (CLIP {manifest_clip}, {detector.info.get('precision')}); "
              f"--clip/--precision do not apply", file=sys.stderr)
    report: dict[str, Any] = {
        "clip": manifest_clip or args.clip, "weights": "random", "precision": detector.info.get("precision"),
        "backend": detector.backend_name, "device": detector.device, "bundle": str(bundle),
        "exported": exported, "export_s": export_s, "n": args.n, "batch_size": args.batch_size,
        "repeats": args.repeats, "dataset_settings": f"{DATASET}/{CATEGORY}",
    }
    with detector:
        runner = detector.runner
        report["setup_s"] = time.perf_counter() - t0
        report["providers"] = list(getattr(runner, "providers", []))
        # (a) warm-up: one cloud end to end (kernels, session, writing), plus one encoder call
        tw = time.perf_counter()
        warm = run_stream(detector, files[:1], workdir / "out_warmup", 1)
        if warm["scored"] != 1:
            raise SystemExit(f"warm-up failed: {warm['failed']}")
        report["warmup_s"] = time.perf_counter() - tw
        # (b) inputs for the encoder alone: loaded and rendered one by one (isolated stage times)
        samples, renders, iso = prepare_views(detector, files)
        report["points_per_cloud"] = int(statistics.fmean(s.num_points for s in samples))
        report["views"] = int(renders[0].images.shape[0])
        report["image_size"] = int(renders[0].images.shape[1])
        runner.infer(renders[0].images)  # one more call after the session warmed up in (a)
        report["loadavg_1m_before"] = os.getloadavg()[0]
        enc_runs, e2e_runs, stream_runs = [], [], []
        outs: list[Any] = []
        for r in range(args.repeats):
            enc_wall, outs = encoder_alone(runner, renders)
            enc_runs.append(enc_wall / args.n)
            res = run_stream(detector, files, workdir / "out", args.batch_size)
            if res["scored"] != args.n:
                raise SystemExit(f"end to end scored {res['scored']} of {args.n}: {res['failed']}")
            e2e_runs.append(res["wall_s"] / args.n)
            stream_runs.append(res)
            print(f"  repeat {r + 1}/{args.repeats}: encoder alone {enc_runs[-1]:.3f} s/sample, "
                  f"end to end {e2e_runs[-1]:.3f} s/sample ({e2e_runs[-1] / enc_runs[-1]:.2f}x)", file=sys.stderr)
        report["loadavg_1m_after"] = os.getloadavg()[0]
        iso.update({"encode": statistics.median(enc_runs)})
        iso.update(isolated_finish(detector, samples, renders, outs, workdir / "out_isolated"))
        threads = thread_info(runner)
    ratios = [e / c for e, c in zip(e2e_runs, enc_runs, strict=True)]
    enc, e2e = statistics.median(enc_runs), statistics.median(e2e_runs)
    order = ("load", "render", "encode", "backproject", "write")
    in_pipe = {k: statistics.fmean(s["stages_mean_s"][k] for s in stream_runs) for k in order}
    iso = {k: iso[k] for k in order}
    iso_sum = sum(iso.values())
    report.update({
        "encoder_alone": {"per_sample_s": enc, "samples_per_s": 1.0 / enc, "per_sample_s_range": _range(enc_runs),
                          "runs_per_sample_s": enc_runs},
        "end_to_end": {"per_sample_s": e2e, "samples_per_s": 1.0 / e2e, "per_sample_s_range": _range(e2e_runs),
                       "runs_per_sample_s": e2e_runs, "all_finite": all(s["finite"] for s in stream_runs)},
        "ratio_end_to_end_over_encoder": statistics.median(ratios), "ratio_range": _range(ratios),
        "ratio_runs": ratios, "target_ratio": TARGET_RATIO, "target_met": statistics.median(ratios) <= TARGET_RATIO,
        # one stage after the other, each alone on the machine: what a serial loop would cost per sample
        "stages_isolated_s": {**iso, "serial_sum": iso_sum},
        # the same stages as timed inside the pipelined run (they share the CPUs there, so they are longer)
        "stages_in_pipeline_s": {**in_pipe, "serial_sum": sum(in_pipe.values())},
        "hidden_by_pipelining_s": iso_sum - e2e,
        "speedup_vs_serial": iso_sum / e2e,
        "machine": {"cpu_model": cpu_model(), "cores": os.cpu_count(),
                    "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "threads": threads, "platform": platform.platform()},
        "libraries": library_versions(),
    })
    return report


def print_report(r: dict[str, Any]) -> None:
    enc, e2e = r["encoder_alone"], r["end_to_end"]
    m = r["machine"]
    print(f"detector throughput: {r['clip']} (random weights) {r['precision']} on {r['backend']}/{r['device']}, "
          f"{r['n']} clouds x {r['points_per_cloud']} points, {r['views']} views, batch {r['batch_size']}, "
          f"{r['repeats']} repeat(s)")
    print(f"  machine: {m['cpu_model']}, {m['cores']} cores; threads {m['threads']}; load average "
          f"{r['loadavg_1m_before']:.1f} -> {r['loadavg_1m_after']:.1f}")

    def line(name: str, d: dict[str, Any]) -> None:
        rg = d["per_sample_s_range"]
        print(f"  {name:14s} {d['per_sample_s']:7.3f} s/sample  {d['samples_per_s']:6.2f} samples/s  "
              f"(range {rg['min']:.3f}-{rg['max']:.3f})")

    line("encoder alone", enc)
    line("end to end", e2e)
    rg = r["ratio_range"]
    print(f"  end to end / encoder alone: {r['ratio_end_to_end_over_encoder']:.2f}x (range {rg['min']:.2f}-"
          f"{rg['max']:.2f}); target <= {TARGET_RATIO}: {'met' if r['target_met'] else 'NOT met'}")
    iso, pipe = r["stages_isolated_s"], r["stages_in_pipeline_s"]
    print(f"  {'stage s/sample':16s} {'isolated':>9s} {'in pipeline':>12s}")
    for k in ("load", "render", "encode", "backproject", "write", "serial_sum"):
        print(f"  {k:16s} {iso[k]:9.3f} {pipe[k]:12.3f}")
    print(f"  pipelining hides {r['hidden_by_pipelining_s']:.3f} s/sample of the isolated serial sum "
          f"({r['speedup_vs_serial']:.2f}x a serial loop)")
    print(f"  (setup {r['setup_s']:.1f} s incl. export {r['export_s']:.1f} s; warm-up {r['warmup_s']:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="number of clouds (default 20)")
    ap.add_argument("--clip", default="ViT-L-14-336", help="CLIP architecture of the random run (align3d-tiny: fast)")
    ap.add_argument("--precision", default="int8", choices=("fp32", "fp16", "int8"))
    ap.add_argument("--bundle", type=Path, default=None,
                    help="reuse the bundle in this folder (exported there first when it holds none)")
    ap.add_argument("--backend", default=None, help="bundle backend (default: the registry's, onnxruntime)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=1, help="clouds per encoder batch in the end-to-end run")
    ap.add_argument("--repeats", type=int, default=1, help="alternate encoder-alone and end-to-end runs R times")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="clouds, outputs (and the exported bundle) here, kept; default: a temporary folder")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or args.batch_size < 1:
        ap.error("--n, --repeats and --batch-size must be >= 1")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = measure(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_detector_") as tmp:
            report = measure(args, Path(tmp))
    print_report(report)
    if args.json:
        from align3d_rt.io_utils import write_json_atomic

        write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
