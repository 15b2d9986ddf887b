"""Encoder timing on this CPU: torch fp32 eager vs ONNX Runtime fp32 vs ONNX Runtime dynamic INT8.

Runs the full EncoderGraph (CLIP visual tower with DPAM + aligner + text head) of 'ViT-L-14-336' with random
weights (timings do not depend on the values) on V views at 336x336, in one process. The ONNX files
(~1.2 GB fp32) live in a temporary directory that is removed afterwards.

    python bench/bench_encoder.py [--clip ViT-L-14-336] [--views 1] [--repeats 3] [--json out.json]

Prints median seconds per call and the ratios; target: INT8 at least 2.5x faster than torch fp32.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

TARGET_INT8_SPEEDUP = 2.5


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run(clip: str, views: int, repeats: int, threads: int | None) -> dict[str, Any]:
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
    x = rng.integers(0, 256, (views, size, size, 3), dtype=np.uint8)
    xt = torch.from_numpy(x)

    def torch_call() -> Any:
        with torch.no_grad():
            return graph(xt)

    torch_call()  # warm-up

    result: dict[str, Any] = {"clip": clip, "weights": "random", "views": views, "repeats": repeats,
                              "threads": threads or torch.get_num_threads(), "model_load_s": load_s}
    ref_maps, ref_probs = (t.numpy() for t in torch_call())
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
        calls: dict[str, Callable[[], Any]] = {"torch_fp32": torch_call}
        for name, path in (("ort_fp32", fp32), ("ort_int8", int8)):
            sess = _session(path, threads)
            calls[name] = lambda s=sess: s.run(None, {"views": x})  # noqa: E731
            maps, probs = calls[name]()  # also the warm-up
            result[f"{name}_max_abs_diff_maps"] = float(np.abs(maps - ref_maps).max())
            result[f"{name}_max_abs_diff_global"] = float(np.abs(probs - ref_probs).max())
        # Round-robin: every backend sees the same machine load (shared CPUs drift over minutes).
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeats):
            for name, call in calls.items():
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
        result["loadavg_1m"] = os.getloadavg()[0]
        for name, ts in times.items():
            result[f"{name}_s"] = statistics.median(ts)
            result[f"{name}_all_s"] = ts
        del calls
    result["ort_fp32_speedup_vs_torch"] = result["torch_fp32_s"] / result["ort_fp32_s"]
    result["ort_int8_speedup_vs_torch"] = result["torch_fp32_s"] / result["ort_int8_s"]
    result["int8_target_met"] = result["ort_int8_speedup_vs_torch"] >= TARGET_INT8_SPEEDUP
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="ViT-L-14-336")
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for torch and ORT (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    r = run(args.clip, args.views, args.repeats, args.threads)
    print(f"{r['clip']} (random weights), {r['views']} view(s) at 336, {r['threads']} thread(s), median of {r['repeats']}:")
    print(f"  (machine load average {r['loadavg_1m']:.1f} on {os.cpu_count()} CPUs while timing)")
    print(f"  torch fp32 eager      {r['torch_fp32_s']:.3f} s")
    print(f"  onnxruntime fp32      {r['ort_fp32_s']:.3f} s  ({r['ort_fp32_speedup_vs_torch']:.2f}x torch; "
          f"max abs diff maps {r['ort_fp32_max_abs_diff_maps']:.2e})")
    print(f"  onnxruntime int8      {r['ort_int8_s']:.3f} s  ({r['ort_int8_speedup_vs_torch']:.2f}x torch; "
          f"max abs diff maps {r['ort_int8_max_abs_diff_maps']:.2e})")
    print(f"  int8 target >= {TARGET_INT8_SPEEDUP}x torch fp32: {'met' if r['int8_target_met'] else 'NOT met'}")
    print(f"  (export {r['export_s']:.1f} s, quantize {r['quantize_s']:.1f} s, fp32 {r['onnx_fp32_mb']:.0f} MB, "
          f"int8 {r['onnx_int8_mb']:.0f} MB)")
    if args.json:
        from align3d_rt.io_utils import write_json_atomic

        write_json_atomic(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
