"""Encoder timing on this CPU: every route in a process of its own, timed round-robin.

Routes (``--routes``, default the product's routes): torch fp32 eager, ONNX Runtime fp32 and dynamic INT8,
OpenVINO fp32 IR with f32 compute and with the bf16 hint, OpenVINO NNCF INT8 IR with the CPU's fastest float
hint (bf16 where it has AMX/AVX512-BF16) and with f32 compute; on request the candidates that lost: the int8
IR with a static batch shape, NNCF's MIXED preset (the int8 default before the PERFORMANCE preset won),
int8 weights only. ``--isa`` caps the instruction sets to measure a CPU class without AMX (or without VNNI)
on this one. Runs the full EncoderGraph (CLIP visual tower with DPAM + aligner + text head) of ``--clip``
with random weights (timings do not depend on the values) on ``--views`` views of 336x336 in one batch.

How: a preparing child process builds the graph, exports the fp32 ONNX graph, the ORT int8 graph and the
OpenVINO IRs with the exporter's own code (``export --format openvino`` settings; int8 calibrated on views of
generated clouds), then exits (its memory goes with it). Each round then starts one child per route, in
turn: it loads its model, makes a warm-up call (whose outputs give the max abs difference to torch fp32),
is timed on one call and exits, so only one route is in memory at a time (ViT-L: about 5 GB at most, the
ORT fp32 session). ``--resident`` instead keeps all route children loaded and times them in turn (no
reload per round, but the memory of all routes together: about 16 GB for ViT-L). Either way each round's
ratios come from calls made back to back (round-robin). Reported: median seconds of ``--rounds`` rounds,
the ratio to torch fp32 eager (median and the per-round range), the max abs map difference to torch, and
the peak RSS of each route. The files live in a temporary folder removed afterwards.

    python bench/bench_encoder.py [--clip ViT-L-14-336] [--views 9] [--rounds 3] [--routes a,b] [--resident] \
        [--json out.json] [--md out.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from encoder_kernels import KERNELS, kernel_sum
from encoder_kernels import markdown as kernels_markdown

ROUTES = {
    "torch_fp32": "torch fp32 eager",
    "ort_fp32": "onnxruntime fp32",
    "ort_int8": "onnxruntime int8 dynamic",
    "ov_fp32_f32": "openvino fp32 IR, f32 compute",
    "ov_fp32_bf16": "openvino fp32 IR, bf16 hint",
    "ov_int8": "openvino nncf int8 IR (PERFORMANCE preset), auto hint (bf16 where the CPU has it)",
    "ov_int8_f32": "openvino nncf int8 IR, f32 compute",
    "ov_int8_static": "openvino nncf int8 IR, static batch shape, auto hint",
    "ov_int8_mixed": "openvino nncf int8 IR, MIXED preset (asymmetric activations), auto hint",
    "ov_int8w": "openvino int8 weights only (nncf.compress_weights), auto hint",
    **KERNELS,  # encoder_kernels: the graph's kernels timed alone beside the routes
}
# The default set (--routes not given): the product's routes. The ov_int8 variants are candidates that lost
# (docs/bench/cpu-vitl-openvino-2026-12-03b); name them with --routes to time them again.
DEFAULT_ROUTES = ("torch_fp32", "ort_fp32", "ort_int8", "ov_fp32_f32", "ov_fp32_bf16", "ov_int8", "ov_int8_f32")
REFERENCE = "torch_fp32"
PRODUCT = "ov_int8"  # the route export --format openvino writes and infer runs
# --isa: the instruction sets the route processes may use. ``native`` = all this CPU has; the others cap
# oneDNN (OpenVINO's CPU plugin and torch), MKL (torch's fp32 GEMMs) and OpenVINO's own checks, so that an
# AMX machine measures what a CPU of that class gets: ``avx512_vnni`` = AVX-512 with VNNI int8 dot products
# but no BF16 and no AMX (Xeon Scalable 2nd gen, Cascade Lake), ``avx512`` = AVX-512 without VNNI (1st gen,
# Skylake-SP), ``avx2`` = AVX2 FMA only, no VNNI (older Xeons, many desktop CPUs). Emulated, not a different
# chip: same caches, memory and clock. ONNX Runtime's own kernels (MLAS) have no such switch: its rows run
# with every instruction set this CPU has, capped or not.
ISA_CAPS: dict[str, dict[str, str]] = {
    "native": {},
    "avx512_vnni": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI", "DNNL_MAX_CPU_ISA": "AVX512_CORE_VNNI",
                    "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DNNL_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
ISA_HAS_BF16 = {"native": None, "avx512_vnni": False, "avx512": False, "avx2": False}  # None: ask the CPU


# ----------------------------------------------------------------------------------------- children
def prepare(work: Path, clip: str, views: int, calibration_samples: int, routes: list[str]) -> dict[str, Any]:
    """Build and export everything the routes need into ``work``; the input views go to views.npy."""
    import open_clip
    import torch

    from align3d_rt.export.onnx_export import export_onnx, quantize_int8
    from align3d_rt.model.clip_backbone import register_tiny_config
    from align3d_rt.model.graph import build_encoder_graph

    register_tiny_config()
    cfg = open_clip.get_model_config(clip)
    if cfg is None:
        raise SystemExit(f"unknown CLIP model {clip!r}")
    text = np.random.default_rng(0).standard_normal((2, 2, int(cfg["embed_dim"]))).astype(np.float32)
    np.save(work / "text.npy", text)
    graph = build_encoder_graph(clip, "random", None, text, seed=0)
    size = int(graph.image_size)
    np.save(work / "views.npy", np.random.default_rng(1).integers(0, 256, (views, size, size, 3), dtype=np.uint8))
    facts: dict[str, Any] = {"image_size": size}
    t0 = time.perf_counter()
    with torch.no_grad():
        export_onnx(graph, work / "fp32.onnx", size)
    del graph
    facts["export_s"] = time.perf_counter() - t0
    if "ort_int8" in routes:
        t0 = time.perf_counter()
        quantize_int8(work / "fp32.onnx", work / "int8.onnx")
        facts["ort_quantize_s"] = time.perf_counter() - t0
    if any(r.startswith(("ov_", "k_")) for r in routes):
        from align3d_rt.export.openvino_export import convert_and_compress

        t0 = time.perf_counter()
        convert_and_compress(work / "fp32.onnx", work / "fp32.xml", "fp32")
        facts["ov_convert_s"] = time.perf_counter() - t0
    if any(r.startswith("ov_int8") and r != "ov_int8w" for r in routes):
        from profile_openvino import calibration_views

        t0 = time.perf_counter()
        calib = np.concatenate(calibration_views(calibration_samples, size), axis=0)
        convert_and_compress(work / "fp32.onnx", work / "int8.xml", "int8", calib)
        facts["ov_quantize_s"] = time.perf_counter() - t0
        facts["ov_calibration_views"] = int(calib.shape[0])
        if "ov_int8_mixed" in routes:
            t0 = time.perf_counter()
            convert_and_compress(work / "fp32.onnx", work / "int8_mixed.xml", "int8", calib, preset="mixed")
            facts["ov_quantize_mixed_s"] = time.perf_counter() - t0
    if "ov_int8w" in routes:
        t0 = time.perf_counter()
        convert_and_compress(work / "fp32.onnx", work / "int8w.xml", "int8-weights")
        facts["ov_compress_weights_s"] = time.perf_counter() - t0
    if any(r in KERNELS for r in routes):
        from encoder_kernels import prepare_kernels

        from align3d_rt.export.openvino_export import INT8_PRESET

        t0 = time.perf_counter()
        facts["kernels"] = prepare_kernels(work, work / "fp32.xml", (views, size, size, 3), INT8_PRESET)
        facts["kernels_prepare_s"] = time.perf_counter() - t0
    facts["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the worker's NNCF is apart
    return facts


def fastest_float_hint(core: Any) -> str:
    """bf16 where the CPU (or the --isa cap) has BF16, else f32."""
    caps = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    has_bf16 = ISA_HAS_BF16[os.environ.get("ALIGN3D_BENCH_ISA", "native")]  # OpenVINO reports the chip's
    return "bf16" if ("BF16" in caps if has_bf16 is None else has_bf16) else "f32"


def load_route(work: Path, route: str, clip: str) -> tuple[Callable[[np.ndarray], Any], dict[str, Any]]:
    """The route's call (views -> (maps, probs)) and what it ran as."""
    if route == "torch_fp32":
        import torch

        from align3d_rt.model.graph import build_encoder_graph

        graph = build_encoder_graph(clip, "random", None, np.load(work / "text.npy"), seed=0)

        def call(x: np.ndarray) -> Any:
            with torch.no_grad():
                return [t.numpy() for t in graph(torch.from_numpy(x))]

        return call, {"threads": torch.get_num_threads()}
    if route.startswith("ort_"):
        import onnxruntime as ort

        from align3d_rt.loaders import OrtSessionLoader

        sess = OrtSessionLoader(work / f"{route[4:]}.onnx", "fp32", None)()  # the runner's settings (CPU EP)
        return (lambda x: sess.run(None, {"views": x})), {"onnxruntime": ort.__version__}
    import openvino as ov

    from align3d_rt.loaders import openvino_core

    core = openvino_core()  # the process's one Core
    fast = fastest_float_hint(core)
    if route in KERNELS:
        from encoder_kernels import load_kernel

        kernel_call, kernel_facts = load_kernel(work, route, fast)
        return kernel_call, {**kernel_facts, "kernel": True}
    ir, hint = {"ov_fp32_f32": ("fp32", "f32"), "ov_fp32_bf16": ("fp32", "bf16"), "ov_int8": ("int8", fast),
                "ov_int8_f32": ("int8", "f32"), "ov_int8_static": ("int8", fast), "ov_int8_mixed": ("int8_mixed", fast),
                "ov_int8w": ("int8w", fast)}[route]
    if hint == "bf16" and fast != "bf16":
        raise SystemExit("SKIP: the CPU (or --isa) has no BF16")
    from align3d_rt.loaders import OpenVinoCompiler

    model = core.read_model(str(work / f"{ir}.xml"))
    if route == "ov_int8_static":  # the batch axis fixed to the timed batch (the bundle keeps it dynamic)
        model.reshape({0: list(np.load(work / "views.npy", mmap_mode="r").shape)})
    compiled = OpenVinoCompiler(model, "CPU", hint, "LATENCY", core=core)().model
    request = compiled.create_infer_request()

    def ov_call(x: np.ndarray) -> Any:
        request.infer({0: x})
        return [request.get_output_tensor(i).data for i in range(2)]

    return ov_call, {"compute_precision": hint, "openvino": ov.get_version()}


def worker(work: Path, route: str, clip: str) -> int:
    """Load the route, warm up (saving its outputs), then time one call per 'run' line on stdin."""
    try:
        call, facts = load_route(work, route, clip)
    except SystemExit as stop:
        print(json.dumps({"skipped": str(stop).removeprefix("SKIP: ")}), flush=True)
        return 0
    x = np.load(work / "views.npy")
    t0 = time.perf_counter()
    out = call(x)
    facts["first_call_s"] = time.perf_counter() - t0
    if not facts.get("kernel"):  # a kernel's output is no map
        np.save(work / f"out_{route}_maps.npy", np.asarray(out[0], np.float32))
        np.save(work / f"out_{route}_probs.npy", np.asarray(out[1], np.float32))
    print(json.dumps({"ready": facts}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        call(x)
        print(json.dumps({"s": time.perf_counter() - t0}), flush=True)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    return 0


# ----------------------------------------------------------------------------------------- parent
def _child(args: list[str], isa: str = "native") -> subprocess.Popen[str]:
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(here.parent), str(here),
                                                                   os.environ.get("PYTHONPATH")) if p))
    env.update(ISA_CAPS[isa], ALIGN3D_BENCH_ISA=isa)
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def _read(proc: subprocess.Popen[str], route: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"bench_encoder: route {route} died (exit {proc.wait()})")
    return json.loads(line)


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _start(work: Path, route: str, clip: str, result: dict[str, Any]) -> subprocess.Popen[str] | None:
    """A loaded, warmed-up route process (None when the route cannot run here: recorded as skipped)."""
    proc = _child(["--worker", route, "--dir", str(work), "--clip", clip], result["isa"])
    msg = _read(proc, route)
    if "skipped" in msg:
        result["routes"][route] = {"skipped": msg["skipped"]}
        proc.wait()
        return None
    row = result["routes"].setdefault(route, {"label": ROUTES[route], "times_s": [], "peak_rss_mb": 0.0,
                                              "first_call_s": []})
    row["first_call_s"].append(msg["ready"].pop("first_call_s"))
    row.update(msg["ready"])
    return proc


def _time_one(proc: subprocess.Popen[str], route: str, result: dict[str, Any]) -> None:
    _send(proc, "run")
    result["routes"][route]["times_s"].append(_read(proc, route)["s"])


def _stop(proc: subprocess.Popen[str], route: str, result: dict[str, Any]) -> None:
    _send(proc, "quit")
    row = result["routes"][route]
    row["peak_rss_mb"] = max(row["peak_rss_mb"], _read(proc, route)["peak_rss_mb"])
    proc.wait()


def run(clip: str, views: int, rounds: int, routes: list[str], calibration_samples: int,
        resident: bool = False, isa: str = "native") -> dict[str, Any]:
    t_start = time.perf_counter()
    result: dict[str, Any] = {"clip": clip, "weights": "random", "views": views, "rounds": rounds,
                              "isa": isa, "isa_env": ISA_CAPS[isa],
                              "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                              "loadavg_start": os.getloadavg()[0], "routes": {}}
    with tempfile.TemporaryDirectory(prefix="align3d_bench_") as tmp:
        work = Path(tmp)
        prep = _child(["--prepare", str(work), "--clip", clip, "--views", str(views), "--routes", ",".join(routes),
                       "--calibration-samples", str(calibration_samples)])
        result["prepare"] = _read(prep, "prepare")
        if prep.wait() != 0:
            raise SystemExit("bench_encoder: preparing the models failed")
        result["loadavg_timing_start"] = os.getloadavg()[0]
        if resident:  # every route loaded once and kept: faster, memory = the sum of the routes
            procs = {r: p for r in routes if (p := _start(work, r, clip, result)) is not None}
            for _ in range(rounds):
                for route, proc in procs.items():
                    _time_one(proc, route, result)
            for route, proc in procs.items():
                _stop(proc, route, result)
        else:  # one route process alive at a time: memory = the largest route
            for _ in range(rounds):
                for route in routes:
                    if "skipped" in result["routes"].get(route, {}):
                        continue
                    single = _start(work, route, clip, result)
                    if single is not None:
                        _time_one(single, route, result)
                        _stop(single, route, result)
        result["loadavg_timing_end"] = os.getloadavg()[0]
        timed = [r for r in routes if "skipped" not in result["routes"][r]]
        result["kernel_sum"] = kernel_sum(result, REFERENCE, PRODUCT)
        peaks = [result["routes"][r]["peak_rss_mb"] for r in timed]
        result["mode"] = "resident" if resident else "sequential"
        result["peak_rss_all_routes_mb"] = sum(peaks) if resident else max(peaks)
        ref = {k: np.load(work / f"out_{REFERENCE}_{k}.npy") for k in ("maps", "probs")} if REFERENCE in timed else None
        for route in timed:
            row = result["routes"][route]
            row["median_s"] = statistics.median(row["times_s"])
            if row.get("kernel"):
                continue
            if ref is not None:
                row["max_abs_diff_maps"] = float(np.abs(np.load(work / f"out_{route}_maps.npy") - ref["maps"]).max())
                row["max_abs_diff_global"] = float(np.abs(np.load(work / f"out_{route}_probs.npy")
                                                          - ref["probs"]).max())
            if REFERENCE in timed:
                per = [t / u for t, u in zip(result["routes"][REFERENCE]["times_s"], row["times_s"], strict=True)]
                row["ratio_vs_torch"] = statistics.median(result["routes"][REFERENCE]["times_s"]) / row["median_s"]
                row["ratio_range"] = [min(per), max(per)]
    result["total_s"] = time.perf_counter() - t_start
    return result


def to_markdown(r: dict[str, Any]) -> str:
    isa = r.get("isa", "native")
    env = ", ".join(f"{k}={v}" for k, v in r.get("isa_env", {}).items())
    cap = "" if isa == "native" else (f" **Instruction sets capped to `{isa}`** ({env}): an emulated CPU class "
                                      "on this one, same caches, memory and clock. ONNX Runtime rows are not capped "
                                      "(its MLAS kernels have no such switch): read them as this CPU's.")
    lines = [f"### bench_encoder: {r['clip']} (random weights), {r['views']} views of 336x336 in one batch", "",
             f"CPU {r['cpu']}, {r['cpus']} logical CPUs.{cap} Load average {r['loadavg_timing_start']:.1f} at the "
             f"first timed round, {r['loadavg_timing_end']:.1f} at the last (the bench's own busy threads count up "
             f"to {r['cpus']}; more means other work shared the CPUs and inflated absolute seconds; the ratios come "
             "from calls made back to back in each round). "
             f"Every route ran in a process of its own; median of {r['rounds']} round-robin rounds; ratio range = "
             "min-max of the per-round ratios. "
             f"Whole run {r['total_s'] / 60:.1f} min; mode {r['mode']}: " + (
                 "all route processes alive while timing, their peak RSS together "
                 if r["mode"] == "resident" else "one route process alive at a time, the largest peak RSS ")
             + f"{r['peak_rss_all_routes_mb'] / 1024:.1f} GB.", "",
             "| route | median s | vs torch fp32 eager | per-round range | max abs map diff to torch | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|"]
    for route, row in r["routes"].items():
        if "skipped" in row:
            lines.append(f"| {ROUTES[route]} | skipped: {row['skipped']} | | | | |")
            continue
        ratio = f"{row['ratio_vs_torch']:.2f}x" if "ratio_vs_torch" in row else "-"
        rng = f"{row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f}" if "ratio_range" in row else "-"
        diff = f"{row['max_abs_diff_maps']:.2e}" if "max_abs_diff_maps" in row else "-"
        lines.append(f"| {row['label']} | {row['median_s']:.2f} | {ratio} | {rng} | {diff} | "
                     f"{row['peak_rss_mb']:.0f} |")
    lines += kernels_markdown(r, REFERENCE, PRODUCT)
    p = {k: v for k, v in r["prepare"].items() if k != "kernels"}
    lines += ["", "Preparation (not timed rounds): " + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
                                                              for k, v in p.items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="ViT-L-14-336")
    ap.add_argument("--views", type=int, default=9, help="views in one batch (default 9)")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds (default 3)")
    ap.add_argument("--routes", default=",".join(DEFAULT_ROUTES),
                    help=f"comma-separated, from {', '.join(ROUTES)} (default: {', '.join(DEFAULT_ROUTES)})")
    ap.add_argument("--calibration-samples", type=int, default=1,
                    help="generated clouds (9 views each) that calibrate the OpenVINO int8 IR (default 1)")
    ap.add_argument("--resident", action="store_true",
                    help="keep every route loaded while timing (faster; memory = the sum of the routes, about "
                         "16 GB for ViT-L); default: one route process alive at a time, started each round")
    ap.add_argument("--isa", choices=list(ISA_CAPS), default="native",
                    help="instruction sets the routes may use: native (default), or an emulated CPU class on "
                         "this one: avx512_vnni (no AMX, no BF16), avx512 (no VNNI either), avx2 (no AVX-512); "
                         "ONNX Runtime's own kernels are not capped")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--md", type=Path, default=None, help="also write the table here (markdown)")
    ap.add_argument("--render", type=Path, default=None, metavar="SAVED.json",
                    help="write the report (--md, --json) again from a saved run's JSON; times nothing")
    ap.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    routes = [r for r in args.routes.split(",") if r]
    unknown = [r for r in routes if r not in ROUTES]
    if unknown or not routes:
        raise SystemExit(f"--routes: unknown {unknown}; choose from {', '.join(ROUTES)}")
    if args.rounds < 1 or args.views < 1:
        raise SystemExit("--rounds and --views must be at least 1")
    if args.render is not None:  # the report again from a saved run's JSON (per-round figures recomputed)
        r = json.loads(args.render.read_text())
        r["kernel_sum"] = kernel_sum(r, REFERENCE, PRODUCT)
        _write(r, args)
        return 0
    if args.prepare is not None:
        protocol = os.dup(1)  # stdout carries the one JSON line: what the libraries print goes to stderr
        os.dup2(2, 1)
        try:
            facts = prepare(args.prepare, args.clip, args.views, args.calibration_samples, routes)
        finally:
            sys.stdout.flush()
            os.dup2(protocol, 1)
        print(json.dumps(facts), flush=True)
        return 0
    if args.worker is not None:
        return worker(args.dir, args.worker, args.clip)
    _write(run(args.clip, args.views, args.rounds, routes, args.calibration_samples, args.resident, args.isa), args)
    return 0


def _write(r: dict[str, Any], args: argparse.Namespace) -> None:
    md = to_markdown(r)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md + "\n")


if __name__ == "__main__":
    sys.exit(main())
