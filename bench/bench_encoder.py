"""Encoder timing on this CPU, every route in one process, round-robin.

Routes: torch fp32 eager, torch bf16 autocast, ONNX Runtime fp32 and dynamic INT8, OpenVINO fp32 (f32
compute), OpenVINO fp32 IR with the bf16 precision hint, OpenVINO NNCF INT8 (auto hint: bf16 where the CPU
has it; also with f32 compute, and with the THROUGHPUT hint as the backend runs it: the batch split over
parallel infer requests). Runs the full EncoderGraph (CLIP visual tower with DPAM + aligner + text
head) of 'ViT-L-14-336' with random weights (timings do not depend on the values) on V views at
336x336 for each V of --views (e.g. 1 and 9 views in one batch). The ONNX/IR files (~1.2 GB fp32) live
in a temporary directory that is removed afterwards. OpenVINO routes are skipped when openvino/nncf are not installed.

    python bench/bench_encoder.py [--clip ViT-L-14-336] [--views 1,9] [--repeats 3] [--json out.json]

Prints median seconds per call, each route's ratio to torch fp32 and its max abs map difference to torch
fp32; targets: ONNX Runtime INT8 >= 2.5x torch fp32, OpenVINO INT8 >= 5x torch fp32 (9 views).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET_INT8_SPEEDUP = 2.5
TARGET_OV_INT8_SPEEDUP = 5.0


def _session(path: Path, threads: int | None) -> Any:
    from align3d_rt.loaders import OrtSessionLoader

    return OrtSessionLoader(path, "fp32", threads)()  # fp32 and int8 graphs: the same settings


def _ov_compile(core: Any, model: Any, precision: str, threads: int | None, hint: str = "LATENCY") -> Any:
    from align3d_rt.loaders import OpenVinoCompiler

    return OpenVinoCompiler(model, "CPU", precision, hint, threads=threads, core=core)().model


def _calibration_views(count: int, size: int) -> list[np.ndarray]:
    """Views of generated clouds rendered with the default settings (what a random run calibrates on)."""
    from align3d_rt.render import RenderSettings, render_views
    from align3d_rt.render.shapes import organized_object, unorganized_cloud

    settings = RenderSettings()
    if settings.image_size != size:
        raise SystemExit(f"{size}x{size} graph: the default render settings give {settings.image_size}")
    return [render_views(organized_object(seed=i)[0] if i % 2 == 0 else unorganized_cloud(40_000, seed=i),
                         settings).images for i in range(count)]


def run(clip: str, view_counts: list[int], repeats: int, threads: int | None,
        calibration_samples: int = 2, openvino: bool = True) -> dict[str, Any]:
    import torch

    from align3d_rt.export.onnx_export import export_onnx, quantize_int8
    from align3d_rt.model.graph import build_encoder_graph

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    import open_clip

    from align3d_rt.model.clip_backbone import register_tiny_config

    register_tiny_config()
    cfg = open_clip.get_model_config(clip)
    if cfg is None:
        raise SystemExit(f"unknown CLIP model {clip!r}")
    rng = np.random.default_rng(0)
    text = rng.standard_normal((2, 2, int(cfg["embed_dim"]))).astype(np.float32)
    graph = build_encoder_graph(clip, "random", None, text, seed=0)
    load_s = time.perf_counter() - t0
    size = int(graph.image_size)
    result: dict[str, Any] = {"clip": clip, "weights": "random", "views": view_counts, "repeats": repeats,
                              "threads": threads or torch.get_num_threads(), "model_load_s": load_s, "by_views": {}}
    if openvino:
        try:
            import nncf  # noqa: F401
            import openvino as ov
        except ImportError as err:
            print(f"bench_encoder: OpenVINO routes skipped ({err})", file=sys.stderr)
            openvino = False
    with tempfile.TemporaryDirectory(prefix="align3d_bench_") as tmp:
        fp32, int8 = Path(tmp) / "encoder_fp32.onnx", Path(tmp) / "encoder_int8.onnx"
        t0 = time.perf_counter()
        export_onnx(graph, fp32, size)
        result["export_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        quantize_int8(fp32, int8)
        result["quantize_s"] = time.perf_counter() - t0
        result["onnx_fp32_mb"] = fp32.stat().st_size / 1e6
        result["onnx_int8_mb"] = int8.stat().st_size / 1e6
        sessions = {name: _session(path, threads) for name, path in (("ort_fp32", fp32), ("ort_int8", int8))}
        compiled: dict[str, Any] = {}
        if openvino:
            from align3d_rt.export.openvino_export import convert_and_compress
            from align3d_rt.runtime.openvino_backend import infer_split

            core = ov.Core()
            t0 = time.perf_counter()
            convert_and_compress(fp32, Path(tmp) / "fp32.xml", "fp32")
            result["ov_convert_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            calib = np.concatenate(_calibration_views(calibration_samples, size), axis=0)
            convert_and_compress(fp32, Path(tmp) / "int8.xml", "int8", calib)  # the export's NNCF settings
            result["ov_quantize_s"] = time.perf_counter() - t0
            result["ov_calibration_views"] = int(calib.shape[0])
            caps = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            result["cpu_capabilities"] = caps
            fast = "bf16" if "BF16" in caps else "f32"
            ov_fp32, ov_int8 = (core.read_model(str(Path(tmp) / name)) for name in ("fp32.xml", "int8.xml"))
            compiled = {"ov_fp32": _ov_compile(core, ov_fp32, "f32", threads),
                        f"ov_{fast}": _ov_compile(core, ov_fp32, fast, threads),
                        "ov_int8": _ov_compile(core, ov_int8, fast, threads)}
            if fast != "f32":
                compiled["ov_int8_f32"] = _ov_compile(core, ov_int8, "f32", threads)
            # The backend's THROUGHPUT mode: several streams, each batch split over parallel requests.
            tput = _ov_compile(core, ov_int8, fast, threads, hint="THROUGHPUT")
            requests = int(tput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            pool = [tput.create_infer_request() for _ in range(requests)]
            compiled["ov_int8_tput"] = lambda x, rs=pool: infer_split(rs, x)
            result["ov_throughput_requests"] = requests
            result["ov_int8_compute"] = fast
        for views in view_counts:
            x = rng.integers(0, 256, (views, size, size, 3), dtype=np.uint8)
            xt = torch.from_numpy(x)

            def torch_call(xt: Any = xt) -> Any:
                with torch.no_grad():
                    return graph(xt)

            def torch_bf16(xt: Any = xt) -> Any:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return graph(xt)

            calls: dict[str, Callable[[], Any]] = {"torch_fp32": torch_call, "torch_bf16": torch_bf16}
            for name, sess in sessions.items():
                calls[name] = lambda s=sess, x=x: s.run(None, {"views": x})
            for name, cm in compiled.items():
                calls[name] = lambda c=cm, x=x: c(x)
            ref_maps, ref_probs = (t.numpy() for t in torch_call())  # also the warm-up
            row: dict[str, Any] = {}
            for name, call in calls.items():
                if name == "torch_fp32":
                    continue
                out = call()  # warm-up and the difference to torch fp32
                maps, probs = (np.asarray(o.float().numpy() if hasattr(o, "float") else o, np.float32)
                               for o in (out[0], out[1]))
                row[f"{name}_max_abs_diff_maps"] = float(np.abs(maps - ref_maps).max())
                row[f"{name}_max_abs_diff_global"] = float(np.abs(probs - ref_probs).max())
            # Round-robin: every route sees the same machine load (shared CPUs drift over minutes).
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(repeats):
                for name, call in calls.items():
                    t0 = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - t0)
            row["loadavg_1m"] = os.getloadavg()[0]
            for name, ts in times.items():
                row[f"{name}_s"] = statistics.median(ts)
                row[f"{name}_all_s"] = ts
                row[f"{name}_speedup_vs_torch"] = row["torch_fp32_s"] / row[f"{name}_s"]
                # Per round: the ratio of the two calls made back to back in that round.
                per = [t / u for t, u in zip(times["torch_fp32"], ts, strict=True)]
                row[f"{name}_speedup_range"] = [min(per), max(per)]
            row["ort_int8_target_met"] = row["ort_int8_speedup_vs_torch"] >= TARGET_INT8_SPEEDUP
            if "ov_int8_s" in row:
                row["ov_int8_target_met"] = row["ov_int8_speedup_vs_torch"] >= TARGET_OV_INT8_SPEEDUP
                row["ov_int8_faster_than_ort_int8"] = row["ov_int8_s"] < row["ort_int8_s"]
            result["by_views"][str(views)] = row
        del sessions, compiled
    return result


_LABELS = {"torch_fp32": "torch fp32 eager", "torch_bf16": "torch bf16 autocast", "ort_fp32": "onnxruntime fp32",
           "ort_int8": "onnxruntime int8", "ov_fp32": "openvino fp32 (f32)", "ov_bf16": "openvino fp32 IR, bf16 hint",
           "ov_f32": "openvino fp32 IR (no bf16)", "ov_int8": "openvino nncf int8",
           "ov_int8_f32": "openvino nncf int8, f32 hint", "ov_int8_tput": "openvino nncf int8, THROUGHPUT"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="ViT-L-14-336")
    ap.add_argument("--views", default="1,9", help="comma-separated view batch sizes (default 1,9)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for every route (default: all)")
    ap.add_argument("--calibration-samples", type=int, default=2,
                    help="generated clouds whose views calibrate the OpenVINO int8 model (default 2 = 18 views)")
    ap.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO routes")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    counts = [int(v) for v in str(args.views).split(",") if v.strip()]
    r = run(args.clip, counts, args.repeats, args.threads, args.calibration_samples, not args.no_openvino)
    print(f"{r['clip']} (random weights) at 336, {r['threads']} thread(s), median of {r['repeats']}, round-robin:")
    for views, row in r["by_views"].items():
        print(f"  {views} view(s) in one batch "
              f"(machine load average {row['loadavg_1m']:.1f} on {os.cpu_count()} CPUs):")
        for name in [k[:-2] for k in row if k.endswith("_s") and not k.endswith("_all_s")]:
            diff = row.get(f"{name}_max_abs_diff_maps")
            lo, hi = row[name + "_speedup_range"]
            print(f"    {_LABELS.get(name, name):30s} {row[name + '_s']:7.3f} s  "
                  f"{row[name + '_speedup_vs_torch']:5.2f}x torch"
                  f" (rounds {lo:.2f}-{hi:.2f})" + ("" if diff is None else f"  max abs diff maps {diff:.2e}"))
        print(f"    onnxruntime int8 >= {TARGET_INT8_SPEEDUP}x torch fp32: "
              f"{'met' if row['ort_int8_target_met'] else 'NOT met'}")
        if "ov_int8_target_met" in row:
            print(f"    openvino int8 >= {TARGET_OV_INT8_SPEEDUP}x torch fp32: "
                  f"{'met' if row['ov_int8_target_met'] else 'NOT met'}; faster than onnxruntime int8: "
                  f"{'yes' if row['ov_int8_faster_than_ort_int8'] else 'no'}")
    extra = (f", openvino convert {r['ov_convert_s']:.1f} s, nncf quantize {r['ov_quantize_s']:.1f} s "
             f"({r['ov_calibration_views']} views)" if "ov_convert_s" in r else "")
    print(f"  (export {r['export_s']:.1f} s, ort quantize {r['quantize_s']:.1f} s{extra}, fp32 "
          f"{r['onnx_fp32_mb']:.0f} MB, "
          f"int8 {r['onnx_int8_mb']:.0f} MB)")
    if args.json:
        from align3d_rt.io_utils import write_json_atomic

        write_json_atomic(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
