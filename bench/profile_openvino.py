"""Where the OpenVINO encoder's time goes: per-op-type profile of the IR (OpenVINO ``PERF_COUNT``).

Builds the EncoderGraph of ``--clip`` with random weights (timings do not depend on the values), exports it
with the project's exporter (fp32 ONNX -> IR in the export's worker; NNCF int8 with the export's settings,
calibrated on views of generated clouds) and compiles it on the CPU as

- ``fp32-f32``: the fp32 IR with f32 compute (``INFERENCE_PRECISION_HINT f32``);
- ``fp32-bf16``: the fp32 IR with the bf16 hint (AMX / AVX512-BF16; skipped when the CPU has no BF16);
- ``int8``: the NNCF int8 IR with the CPU's fastest float hint for what stays in float (bf16 where it can).

Each is run once to warm up, then once with ``PERF_COUNT`` on; ``get_profiling_info()`` gives per node its
``node_type`` (the CPU plugin's node after its own fusions), ``exec_type`` (the kernel and the precision it
really ran in, e.g. ``brgemm_avx512_amx_I8``) and real time. The report is a table per op type: node count,
ms, share of the total, the exec types (kernel_precision x count), plus what was fused: attention nodes
(``ScaledDotProductAttention``, snippets ``Subgraph`` MHA), LayerNorm (``MVN``), GELU (``Eltwise`` fused or
not), and the Reorder/Convert time.

    python bench/profile_openvino.py [--clip ViT-L-14-336 | --quick] [--views 9] [--md out.md] [--json out.json]

``--quick`` profiles the tiny CLIP (seconds). Memory: ViT-L needs about 6 GB (graph, ONNX, three compiled
models one after the other).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("fp32-f32", "fp32-bf16", "int8")
# Node types that mean "attention ran as one fused kernel" in the CPU plugin.
ATTENTION_FUSED = ("ScaledDotProductAttention", "MHA", "Subgraph")


def build_irs(clip: str, tmp: Path, calibration_samples: int) -> dict[str, Any]:
    """Export the encoder of ``clip`` (random weights) to fp32 and NNCF int8 IR in ``tmp``, as the exporter does."""
    import open_clip

    from align3d_rt.export.onnx_export import export_onnx
    from align3d_rt.export.openvino_export import convert_and_compress
    from align3d_rt.model.clip_backbone import register_tiny_config
    from align3d_rt.model.graph import build_encoder_graph

    register_tiny_config()
    cfg = open_clip.get_model_config(clip)
    if cfg is None:
        raise SystemExit(f"unknown CLIP model {clip!r}")
    text = np.random.default_rng(0).standard_normal((2, 2, int(cfg["embed_dim"]))).astype(np.float32)
    graph = build_encoder_graph(clip, "random", None, text, seed=0)
    size = int(graph.image_size)
    facts: dict[str, Any] = {"image_size": size}
    t0 = time.perf_counter()
    onnx_path = tmp / "encoder.onnx"
    export_onnx(graph, onnx_path, size)
    del graph
    facts["export_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    convert_and_compress(onnx_path, tmp / "fp32.xml", "fp32")
    facts["convert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    calib = np.concatenate(calibration_views(calibration_samples, size), axis=0)
    convert_and_compress(onnx_path, tmp / "int8.xml", "int8", calib)
    facts["quantize_s"] = time.perf_counter() - t0
    facts["calibration_views"] = int(calib.shape[0])
    return facts


def calibration_views(count: int, size: int) -> list[np.ndarray]:
    """Views of generated clouds rendered with the default settings (what a random-weights run calibrates on)."""
    from align3d_rt.render import RenderSettings, render_views
    from align3d_rt.render.shapes import organized_object, unorganized_cloud

    settings = RenderSettings()
    if settings.image_size != size:
        raise SystemExit(f"{size}x{size} graph: the default render settings give {settings.image_size}")
    return [render_views(organized_object(seed=i)[0] if i % 2 == 0 else unorganized_cloud(40_000, seed=i),
                         settings).images for i in range(count)]


def profile_compiled(compiled: Any, views: np.ndarray) -> list[dict[str, Any]]:
    """One warm-up and one profiled inference; the executed nodes with their type, kernel and time (ms)."""
    request = compiled.create_infer_request()
    request.infer({0: views})
    request.infer({0: views})
    nodes = []
    for info in request.get_profiling_info():
        if str(info.status).endswith("NOT_RUN"):
            continue
        nodes.append({"name": info.node_name, "node_type": info.node_type, "exec_type": info.exec_type,
                      "ms": info.real_time.total_seconds() * 1e3})
    return nodes


def matmul_ms_of(rows: list[dict[str, Any]]) -> float:
    """ms of every matmul kernel: MatMul, FullyConnected and its quantized forms (FullyConnectedQuantizedLegacy)."""
    kinds = [r for r in rows if r["node_type"] == "MatMul" or r["node_type"].startswith("FullyConnected")]
    return float(sum(r["ms"] for r in kinds))


def summarize(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per op type: count, ms, share, exec types; plus the fusion facts."""
    total = sum(n["ms"] for n in nodes) or 1.0
    by_type: dict[str, dict[str, Any]] = {}
    for n in nodes:
        row = by_type.setdefault(n["node_type"], {"count": 0, "ms": 0.0, "exec": collections.Counter()})
        row["count"] += 1
        row["ms"] += n["ms"]
        row["exec"][n["exec_type"]] += 1
    rows = sorted(({"node_type": k, "count": v["count"], "ms": v["ms"], "share": v["ms"] / total,
                    "exec_types": dict(v["exec"].most_common())} for k, v in by_type.items()),
                  key=lambda r: -r["ms"])
    types = {r["node_type"] for r in rows}
    matmul_ms = matmul_ms_of(rows)
    fused = {
        "attention_fused_nodes": {t: by_type[t]["count"] for t in ATTENTION_FUSED if t in types},
        "softmax_nodes_left": by_type.get("Softmax", {}).get("count", 0),
        "layernorm_as_MVN": by_type.get("MVN", {}).get("count", 0),
        "reorder_ms": by_type.get("Reorder", {}).get("ms", 0.0),
        "convert_ms": by_type.get("Convert", {}).get("ms", 0.0),
        "matmul_fc_ms": matmul_ms,
        "gelu_nodes": sum(1 for n in nodes if "gelu" in n["name"].lower() or "sigmoid" in n["name"].lower()),
    }
    return {"total_ms": total, "rows": rows, "fused": fused, "nodes": len(nodes)}


def run(clip: str, views: int, calibration_samples: int, variants: tuple[str, ...],
        threads: int | None) -> dict[str, Any]:
    import openvino as ov

    from align3d_rt.loaders import openvino_core

    core = openvino_core()  # the process's one Core
    caps = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    fast = "bf16" if "BF16" in caps else "f32"
    out: dict[str, Any] = {"clip": clip, "views": views, "openvino": ov.get_version(), "cpu_capabilities": caps,
                           "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                           "loadavg_start": os.getloadavg()[0], "variants": {}}
    with tempfile.TemporaryDirectory(prefix="align3d_profile_") as tmp:
        out["build"] = build_irs(clip, Path(tmp), calibration_samples)
        size = out["build"]["image_size"]
        x = np.random.default_rng(1).integers(0, 256, (views, size, size, 3), dtype=np.uint8)
        for variant in variants:
            ir, hint = {"fp32-f32": ("fp32.xml", "f32"), "fp32-bf16": ("fp32.xml", "bf16"),
                        "int8": ("int8.xml", fast)}[variant]
            if hint == "bf16" and fast != "bf16":
                out["variants"][variant] = {"skipped": "the CPU has no BF16"}
                continue
            config: dict[str, Any] = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY",
                                      "INFERENCE_PRECISION_HINT": hint}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            compiled = core.compile_model(str(Path(tmp) / ir), "CPU", config)
            t0 = time.perf_counter()
            nodes = profile_compiled(compiled, x)
            summary = summarize(nodes)
            summary.update(hint=hint, ir=ir, wall_two_calls_s=time.perf_counter() - t0)
            out["variants"][variant] = summary
            del compiled
    out["loadavg_end"] = os.getloadavg()[0]
    return out


def to_markdown(r: dict[str, Any], title: str) -> str:
    lines = [f"### {title}", "",
             f"{r['clip']} (random weights), {r['views']} view(s) of 336x336 in one batch, OpenVINO {r['openvino']}, "
             f"CPU {r['cpu']} ({r['cpus']} logical CPUs; capabilities {', '.join(r['cpu_capabilities'])}). "
             f"Load average {r['loadavg_start']:.1f} -> {r['loadavg_end']:.1f} (the profile's own busy threads count "
             f"up to {r['cpus']}; more means other work shared the CPUs and inflated the ms); the shares within one "
             "profile are what to read. One warm-up, then one profiled inference "
             "(`PERF_COUNT`, `get_profiling_info()`); int8 IR calibrated on "
             f"{r['build']['calibration_views']} views of generated clouds.", ""]
    for variant, s in r["variants"].items():
        if "skipped" in s:
            lines += [f"#### {variant}: skipped ({s['skipped']})", ""]
            continue
        f = s["fused"]
        attn = ", ".join(f"{k} x{v}" for k, v in f["attention_fused_nodes"].items()) or "none"
        lines += [f"#### {variant} ({s['ir']}, INFERENCE_PRECISION_HINT {s['hint']}): {s['total_ms']:.0f} ms "
                  f"summed over {s['nodes']} executed nodes", "",
                  f"Fused attention nodes: {attn}; Softmax nodes left: {f['softmax_nodes_left']}; LayerNorm as MVN: "
                  f"{f['layernorm_as_MVN']}; Reorder {f['reorder_ms']:.0f} ms, Convert {f['convert_ms']:.0f} ms; "
                  f"MatMul+FullyConnected* {f['matmul_fc_ms']:.0f} ms.", "",
                  "| op type | nodes | ms | share | exec type (kernel_precision) x nodes |", "|---|---:|---:|---:|---|"]
        for row in s["rows"]:
            if row["share"] < 0.001 and row["node_type"] not in ("Reorder", "Convert"):
                continue
            ex = "; ".join(f"{k} x{v}" for k, v in row["exec_types"].items())
            share = f"{100 * row['share']:.1f}%"
            lines.append(f"| {row['node_type']} | {row['count']} | {row['ms']:.1f} | {share} | {ex} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="ViT-L-14-336")
    ap.add_argument("--quick", action="store_true", help="profile the tiny CLIP (align3d-tiny) instead")
    ap.add_argument("--views", type=int, default=9)
    ap.add_argument("--calibration-samples", type=int, default=2, help="generated clouds (9 views each) for int8")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--title", default="OpenVINO encoder profile")
    ap.add_argument("--md", type=Path, default=None, help="write the tables here (markdown)")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--render", type=Path, default=None,
                    help="profile nothing: re-render a saved --json (its summary lines recomputed from its rows)")
    args = ap.parse_args(argv)
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        for s in saved["variants"].values():
            if "rows" in s:
                s["fused"]["matmul_fc_ms"] = matmul_ms_of(s["rows"])
        return _write(saved, args)
    variants = tuple(v for v in args.variants.split(",") if v)
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"--variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
    clip = "align3d-tiny" if args.quick else args.clip
    return _write(run(clip, args.views, args.calibration_samples, variants, args.threads), args)


def _write(r: dict[str, Any], args: argparse.Namespace) -> int:
    """Print the tables; write them (--md) and the numbers (--json)."""
    md = to_markdown(r, args.title)
    print(md)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
