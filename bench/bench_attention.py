"""Where OpenVINO's fused attention spends its time on this CPU: one attention of ViT-L-14-336's shape.

The encoder's attention (9 views x 16 heads x 577 tokens, head size 64; 43 of them in the DPAM graph) runs
in the CPU plugin's fused MHA kernel (``Subgraph``). This bench times that kernel alone, in one process,
round-robin over variants built with OpenVINO's opset (random inputs, ``--hint`` compute precision):

- ``mha``: MatMul -> Softmax -> MatMul, what the exported graph holds;
- ``sdpa``: the same as one opset-13 ``ScaledDotProductAttention`` (the plugin decomposes and fuses it
  into the same kernel: the exec types show which kernel ran);
- ``d16`` / ``d32`` / ``d128``: other head sizes at the same token count: the matmul work scales with the
  head size and the softmax stays the same, so a line through 16/32/64 gives the matmul share (slope) and
  the softmax share (intercept); 128 is shown, not fitted (its inputs no longer fit the caches: it
  measured unsteady here);
- ``l576``: 576 tokens (no class token), the token count a kernel tiles without a remainder.

Each variant chains ``--chain`` attentions in one model (the output is the next query) so that per-call
overhead is small; reported: median ms per attention over ``--rounds`` rounds, the per-round range, and
the exec types of the executed nodes (``PERF_COUNT``).

    python bench/bench_attention.py [--hint bf16] [--rounds 5] [--json out.json] [--md out.md]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

VIEWS, HEADS, TOKENS, HEAD_DIM = 9, 16, 577, 64
VARIANTS = {  # name: (tokens, head size, built as SDPA)
    "mha": (TOKENS, HEAD_DIM, False),
    "sdpa": (TOKENS, HEAD_DIM, True),
    "d16": (TOKENS, 16, False),
    "d32": (TOKENS, 32, False),
    "d128": (TOKENS, 128, False),
    "l576": (576, HEAD_DIM, False),
}


def attention_model(tokens: int, head_dim: int, sdpa: bool, chain: int, views: int = VIEWS,
                    heads: int = HEADS) -> Any:
    """``chain`` attentions of (views, heads, tokens, head_dim), each one's output the next one's query."""
    import openvino as ov
    import openvino.opset13 as ops

    shape = [views, heads, tokens, head_dim]
    q, k, v = (ops.parameter(shape, np.float32, name=n) for n in ("q", "k", "v"))
    x = q
    for _ in range(chain):
        if sdpa:
            x = ops.scaled_dot_product_attention(x, k, v, causal=False, scale=ops.constant(np.float32(1.0)))
        else:
            x = ops.matmul(ops.softmax(ops.matmul(x, k, False, True), -1), v, False, False)
    return ov.Model([x], [q, k, v], f"attention_{tokens}x{head_dim}")


def exec_types(request: Any) -> list[str]:
    """Sorted ``node type:exec type`` of the executed nodes with time (the kernels that ran)."""
    seen = {f"{p.node_type}:{p.exec_type}" for p in request.get_profiling_info()
            if p.status.name == "EXECUTED" and p.real_time.total_seconds() > 0}
    return sorted(seen)


def flops(tokens: int, head_dim: int) -> float:
    """Multiply-adds x 2 of both matmuls of one attention over all views and heads."""
    return 2.0 * 2.0 * VIEWS * HEADS * tokens * tokens * head_dim


def run(hint: str, rounds: int, chain: int) -> dict[str, Any]:
    import openvino as ov

    from align3d_rt.loaders import openvino_core

    core = openvino_core()  # the process's one Core
    rng = np.random.default_rng(0)
    calls: dict[str, tuple[Any, list[np.ndarray]]] = {}
    for name, (tokens, head_dim, sdpa) in VARIANTS.items():
        compiled = core.compile_model(attention_model(tokens, head_dim, sdpa, chain), "CPU",
                                      {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                                       "PERF_COUNT": True})
        inputs = [(0.5 * rng.standard_normal((VIEWS, HEADS, tokens, head_dim))).astype(np.float32) for _ in range(3)]
        request = compiled.create_infer_request()
        request.infer(inputs)  # warm-up
        calls[name] = (request, inputs)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, (request, inputs) in calls.items():
            t0 = time.perf_counter()
            request.infer(inputs)
            times[name].append((time.perf_counter() - t0) / chain)
    base = times["mha"]
    result: dict[str, Any] = {"openvino": ov.__version__, "hint": hint, "rounds": rounds, "chain": chain,
                              "cpus": os.cpu_count(), "loadavg_end": os.getloadavg()[0], "variants": {}}
    for name, (tokens, head_dim, sdpa) in VARIANTS.items():
        ratios = [b / t for b, t in zip(base, times[name], strict=True)]
        med = statistics.median(times[name])
        result["variants"][name] = {
            "tokens": tokens, "head_dim": head_dim, "sdpa": sdpa, "times_s": times[name], "median_ms": 1e3 * med,
            "speed_vs_mha": statistics.median(ratios), "speed_range": [min(ratios), max(ratios)],
            "tflops": flops(tokens, head_dim) / med / 1e12, "exec_types": exec_types(calls[name][0])}
    return result


def split_lines(result: dict[str, Any]) -> list[str]:
    """The matmul / fixed (softmax and the rest) split at head size 64, from the head-size slope."""
    v = result["variants"]
    if not all(k in v for k in ("d16", "d32", "mha")):
        return []
    xs = [16.0, 32.0, 64.0]
    ys = [v["d16"]["median_ms"], v["d32"]["median_ms"], v["mha"]["median_ms"]]
    slope, intercept = np.polyfit(xs, ys, 1)
    at64 = slope * 64 + intercept
    return [f"Least-squares line through head sizes 16/32/64: {slope:.3f} ms per unit of head size, "
            f"{intercept:.1f} ms at head size 0. At 64: matmul part {slope * 64:.1f} ms "
            f"({100 * slope * 64 / at64:.0f}%), the part that does not grow with the head size (softmax over "
            f"{VIEWS * HEADS * TOKENS * TOKENS / 1e6:.0f} M logits, loads/stores) {intercept:.1f} ms "
            f"({100 * intercept / at64:.0f}%)."]


def markdown(result: dict[str, Any]) -> str:
    lines = [f"### One attention of ViT-L-14-336's shape ({VIEWS} views x {HEADS} heads), OpenVINO "
             f"{result['openvino']}, hint {result['hint']}", "",
             f"{result['cpus']} logical CPUs; load average {result['loadavg_end']:.1f} at the end (the bench's own "
             f"threads count up to 2). One process, {result['rounds']} round-robin rounds, {result['chain']} chained "
             "attentions per call; ms per attention.", "",
             "| variant | tokens | head size | median ms | vs mha (range) | TFLOPS (matmuls) | kernels |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in result["variants"].items():
        lo, hi = r["speed_range"]
        lines.append(f"| {name}{' (opset-13 SDPA)' if r['sdpa'] else ''} | {r['tokens']} | {r['head_dim']} | "
                     f"{r['median_ms']:.1f} | {r['speed_vs_mha']:.2f}x ({lo:.2f}-{hi:.2f}) | {r['tflops']:.2f} | "
                     f"{', '.join(r['exec_types'])} |")
    return "\n".join([*lines, "", *split_lines(result)]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hint", default="bf16", choices=["bf16", "f32"], help="INFERENCE_PRECISION_HINT")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chain", type=int, default=4, help="attentions per call")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    result = run(args.hint, args.rounds, args.chain)
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
