"""The encoder route against its own kernels timed alone, in the same run: where the remaining time sits.

``bench_encoder.py --routes torch_fp32,ov_int8,k_attention_ov,k_attention_torch,k_matmul_int8,k_gemm_int8`` times
kernel "routes" beside the real ones, each in its own process, round-robin like every route:

- ``k_attention_ov``: OpenVINO's fused attention (MatMul -> Softmax -> MatMul, which the CPU plugin runs as one
  MHA kernel) at the graph's attention shape, with the CPU's fastest float hint (bf16 where it has it);
- ``k_attention_torch``: torch's ``scaled_dot_product_attention`` (its CPU flash-attention kernel) at the same
  shape, in bf16 where the CPU has it (f32 otherwise);
- ``k_matmul_int8``: the graph's weight matmuls (every (rows, in, out) shape with at least 1 % of their work,
  repeated in the graph's proportions), quantized with the exporter's NNCF settings and compiled like the
  product's int8 route;
- ``k_gemm_int8``: one square int8 GEMM (GEMM_SIZE cubed) compiled the same way: the int8 rate of this CPU
  and OpenVINO on a shape that suits its kernels best;
- ``k_gemm_int8_torch``: the same GEMM in ``torch._int_mm`` (int8 in, int32 out, no quantize steps): a second
  library's int8 rate on this CPU.
- ``k_gemm_int8_1thread``: ``k_gemm_int8`` compiled for one thread (INFERENCE_NUM_THREADS=1). Per round, the
  rate on all threads over the rate on one says how the int8 units scale with the vCPUs: about the vCPU count
  where each has its own core's AMX unit, about 1 where they share one.
- ``k_attention_ov_1thread``: ``k_attention_ov`` on one thread, the same ratio for the fused attention.

The graph's work is counted from the fp32 IR at the timed batch (``graph_work``): the multiply-adds of the
MatMuls with a constant operand, and the attention logits of the ``ScaledDotProductAttention`` ops as
full-attention equivalents. Per round the kernel sum is

    attention equivalents x (the faster attention kernel) + weight-matmul ops / (the int8 kernel's ops per s)

with everything else (LayerNorm, GELU, transposes, reorders, the patch convolution) left out. The route's time
over the kernel sum says where the time sits: about 1 means the graph runs as fast as its kernels alone (what
remains is in the kernels); above 1, in the rest of the graph; below 1, the kernels run faster inside the
graph than alone (there the int8 matmuls take bf16 in and hand int8 on, fused).
"""
from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

KERNELS = {
    "k_attention_ov": "kernel: OpenVINO fused attention, one attention of the graph's shape",
    "k_attention_torch": "kernel: torch scaled_dot_product_attention (CPU flash attention), the same shape",
    "k_matmul_int8": "kernel: the graph's weight matmul shapes, NNCF int8 as exported",
    "k_gemm_int8": "kernel: one square int8 GEMM, NNCF int8 as exported",
    "k_gemm_int8_torch": "kernel: the same GEMM in torch._int_mm (int8 in, int32 out: a second library's rate)",
    "k_gemm_int8_1thread": "kernel: the OpenVINO int8 GEMM on one thread (how the int8 units scale with vCPUs)",
    "k_attention_ov_1thread": "kernel: OpenVINO fused attention on one thread (how it scales with vCPUs)",
}
MATMUL_KERNELS = {"k_matmul_int8": "k_matmul_int8.xml", "k_gemm_int8": "k_gemm_int8.xml",
                  "k_gemm_int8_1thread": "k_gemm_int8.xml"}
ONE_THREAD = {"k_gemm_int8_1thread", "k_attention_ov_1thread"}
GEMM_SIZE = 4096
ATTENTION_KERNELS = ("k_attention_ov", "k_attention_torch")
CHAIN = 4  # attentions per timed call (each output is the next query), so per-call overhead is small
MIN_SHARE = 0.01  # weight-matmul shapes below this share of the work are not in the int8 kernel model
MAX_REPEAT = 8


def graph_work(xml: Path, views_shape: tuple[int, ...]) -> dict[str, Any]:
    """Multiply-adds of the IR's weight matmuls by (rows, in, out) and its attention logits, at ``views_shape``."""
    from align3d_rt.loaders import openvino_core

    model = openvino_core().read_model(str(xml))
    model.reshape({0: list(views_shape)})
    live: set[str] = set()  # ops whose value depends on the input
    shapes: Counter[tuple[int, int, int]] = Counter()
    other_ops = 0.0
    attention: list[tuple[list[int], int]] = []  # (query shape, key length) per SDPA
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        sources = [op.input(i).get_source_output().get_node().get_name() for i in range(op.get_input_size())]
        if kind == "Parameter" or any(s in live for s in sources):
            live.add(op.get_name())
        if kind == "MatMul":
            a = list(op.get_input_partial_shape(0).to_shape())
            out = list(op.get_output_partial_shape(0).to_shape())
            k = a[-2] if op.get_attributes().get("transpose_a") else a[-1]
            rows = int(np.prod(out[:-1]))
            if all(s in live for s in sources):
                other_ops += 2.0 * rows * out[-1] * k
            else:
                shapes[(rows, int(k), int(out[-1]))] += 1
        elif kind == "ScaledDotProductAttention":
            attention.append(([int(d) for d in op.get_input_partial_shape(0).to_shape()],
                              int(op.get_input_partial_shape(1).to_shape()[-2])))
    if not attention:
        raise SystemExit(f"{xml}: no ScaledDotProductAttention op; the kernel sum needs the fused attention")
    full_q, full_k = max(attention, key=lambda a: int(np.prod(a[0][:-1])) * a[1])
    full_logits = int(np.prod(full_q[:-1])) * full_k
    return {"weight_matmuls": [[*s, n] for s, n in sorted(shapes.items())],
            "weight_matmul_ops": sum(2.0 * r * k * n * c for (r, k, n), c in shapes.items()),
            "activation_matmul_ops_outside_attention": other_ops,
            "attention_ops": len(attention), "attention_shape": full_q, "attention_keys": full_k,
            "attention_equivalents": sum(int(np.prod(q[:-1])) * lk for q, lk in attention) / full_logits}


def kernel_shapes(work: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """(rows, in, out, repeats) of the int8 kernel model: the shapes with >= MIN_SHARE of the weight-matmul work,
    repeated in proportion to their count (the least frequent once, at most MAX_REPEAT)."""
    total = sum(2.0 * r * k * n * c for r, k, n, c in work["weight_matmuls"])
    big = [(r, k, n, c) for r, k, n, c in work["weight_matmuls"] if 2.0 * r * k * n * c >= MIN_SHARE * total]
    least = min(c for *_, c in big)
    return [(r, k, n, min(MAX_REPEAT, max(1, round(c / least)))) for r, k, n, c in big]


def build_matmul_int8(xml: Path, shapes: list[tuple[int, int, int, int]], preset: str) -> dict[str, Any]:
    """Write ``xml``: one input per (rows, in) pair of ``shapes`` (rows, in, out, repeats), each weight matmul on
    it, NNCF int8 with the exporter's settings (symmetric ``preset``, TRANSFORMER model type, SmoothQuant off)."""
    import nncf
    import openvino as ov
    import openvino.opset13 as ops
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from align3d_rt.export.openvino_export import INT8_SMOOTH_QUANT_ALPHA

    rng = np.random.default_rng(0)
    params = {(r, k): ops.parameter([r, k], np.float32, name=f"x_{r}_{k}") for r, k, _, _ in shapes}
    results, ops_count = [], 0.0
    for r, k, n, repeat in shapes:
        for _ in range(repeat):
            w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
            results.append(ops.result(ops.matmul(params[(r, k)], ops.constant(w), False, True)))
            ops_count += 2.0 * r * k * n
    model = ov.Model(results, list(params.values()), "weight_matmuls")
    items = [{f"x_{r}_{k}": rng.standard_normal((r, k)).astype(np.float32) for r, k in params} for _ in range(2)]
    advanced = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=INT8_SMOOTH_QUANT_ALPHA))
    quantized = nncf.quantize(model, nncf.Dataset(items), preset=nncf.QuantizationPreset[preset.upper()],
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items),
                              advanced_parameters=advanced)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return {"shapes": [list(s) for s in shapes], "ops_per_call": ops_count}


def load_kernel(work_dir: Path, route: str, fast: str) -> tuple[Callable[[np.ndarray], Any], dict[str, Any]]:
    """The kernel's timed call (it ignores the views) and what it ran as."""
    info = json.loads((work_dir / "kernels.json").read_text())
    b, h, tokens, d = info["graph"]["attention_shape"]
    rng = np.random.default_rng(0)
    if route == "k_attention_torch":
        import torch

        dtype = torch.bfloat16 if fast == "bf16" else torch.float32
        q, k, v = (torch.from_numpy(0.5 * rng.standard_normal((b, h, tokens, d), dtype=np.float32)).to(dtype)
                   for _ in range(3))

        def torch_call(views: np.ndarray) -> Any:
            x = q
            with torch.no_grad():
                for _ in range(CHAIN):
                    x = torch.nn.functional.scaled_dot_product_attention(x, k, v, scale=1.0)
            return x

        return torch_call, {"precision": str(dtype).removeprefix("torch."), "per_call": CHAIN,
                            "threads": torch.get_num_threads()}
    if route == "k_gemm_int8_torch":
        import torch

        a, w = (torch.from_numpy(rng.integers(-127, 128, (GEMM_SIZE, GEMM_SIZE), dtype=np.int8)) for _ in range(2))
        return (lambda _: torch._int_mm(a, w)), {"per_call": 1, "threads": torch.get_num_threads()}
    from align3d_rt.loaders import OpenVinoCompiler, openvino_core

    if route in ("k_attention_ov", "k_attention_ov_1thread"):
        from bench_attention import attention_model

        model: Any = attention_model(tokens, d, False, CHAIN, views=b, heads=h)
        inputs: Any = [(0.5 * rng.standard_normal((b, h, tokens, d))).astype(np.float32) for _ in range(3)]
        per_call = CHAIN
    else:
        model = openvino_core().read_model(str(work_dir / MATMUL_KERNELS[route]))
        inputs = {p.get_any_name(): rng.standard_normal(list(p.get_shape())).astype(np.float32)
                  for p in model.inputs}
        per_call = 1
    import openvino as ov

    arrays = list(inputs.values() if isinstance(inputs, dict) else inputs)
    threads = 1 if route in ONE_THREAD else None
    compiler = OpenVinoCompiler(model, "CPU", fast, "LATENCY", threads=threads, core=openvino_core())
    profiled = openvino_core().compile_model(model, "CPU", {**compiler.config(fast), "PERF_COUNT": True})
    probe = profiled.create_infer_request()
    probe.infer(arrays)
    kernels = sorted({f"{p.node_type}:{p.exec_type}" for p in probe.get_profiling_info()
                      if p.status.name == "EXECUTED" and p.real_time.total_seconds() > 0})
    del probe, profiled  # the timed compile runs without the counters
    compiled = compiler().model
    request = compiled.create_infer_request()
    for port, array in zip(compiled.inputs, arrays, strict=True):
        request.set_tensor(port, ov.Tensor(array))  # set once: the timed call copies no input and no output

    def ov_call(_: np.ndarray) -> None:
        request.start_async()
        request.wait()

    used = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    return ov_call, {"compute_precision": fast, "per_call": per_call, "kernels_ran": kernels, "threads": used}


def prepare_kernels(work_dir: Path, fp32_xml: Path, views_shape: tuple[int, ...], preset: str) -> dict[str, Any]:
    """Count the graph's work and build the int8 matmul kernels into ``work_dir`` (kernels.json holds the facts)."""
    work = graph_work(fp32_xml, views_shape)
    facts = {"graph": work,
             "k_matmul_int8": build_matmul_int8(work_dir / MATMUL_KERNELS["k_matmul_int8"], kernel_shapes(work),
                                                preset),
             "k_gemm_int8": build_matmul_int8(work_dir / MATMUL_KERNELS["k_gemm_int8"],
                                              [(GEMM_SIZE, GEMM_SIZE, GEMM_SIZE, 1)], preset)}
    (work_dir / "kernels.json").write_text(json.dumps(facts))
    return facts


def kernel_sum(result: dict[str, Any], reference: str, product: str) -> dict[str, Any] | None:
    """Per round: the kernel sum's seconds, the route's time over it, torch over it, and the int8 rates (ops/s)."""
    rows, info = result["routes"], result["prepare"].get("kernels")
    attention = [rows[k]["times_s"] for k in ATTENTION_KERNELS if "times_s" in rows.get(k, {})]
    if info is None or not attention or "times_s" not in rows.get("k_matmul_int8", {}) \
            or "times_s" not in rows.get(reference, {}):
        return None
    graph = info["graph"]
    per_round = []
    for i, torch_s in enumerate(rows[reference]["times_s"]):
        att_s = min(times[i] for times in attention) / CHAIN
        rate = info["k_matmul_int8"]["ops_per_call"] / rows["k_matmul_int8"]["times_s"][i]
        matmul_s = (graph["weight_matmul_ops"] + graph["activation_matmul_ops_outside_attention"]) / rate
        total = graph["attention_equivalents"] * att_s + matmul_s
        entry = {"attention_s": graph["attention_equivalents"] * att_s, "matmul_s": matmul_s, "kernel_sum_s": total,
                 "torch_over_kernel_sum": torch_s / total, "graph_shapes_int8_tops": rate / 1e12}
        if "times_s" in rows.get("k_gemm_int8", {}):
            gemm_s = rows["k_gemm_int8"]["times_s"][i]
            entry["square_gemm_int8_tops"] = info["k_gemm_int8"]["ops_per_call"] / gemm_s / 1e12
        if "times_s" in rows.get("k_gemm_int8_torch", {}):
            entry["square_gemm_int8_torch_tops"] = 2.0 * GEMM_SIZE**3 / rows["k_gemm_int8_torch"]["times_s"][i] / 1e12
        if "square_gemm_int8_tops" in entry and "times_s" in rows.get("k_gemm_int8_1thread", {}):
            one = info["k_gemm_int8"]["ops_per_call"] / rows["k_gemm_int8_1thread"]["times_s"][i] / 1e12
            entry["square_gemm_int8_1thread_tops"] = one
            entry["gemm_all_threads_over_one"] = entry["square_gemm_int8_tops"] / one
        if all("times_s" in rows.get(k, {}) for k in ("k_attention_ov", "k_attention_ov_1thread")):
            one_s, all_s = (rows[k]["times_s"][i] for k in ("k_attention_ov_1thread", "k_attention_ov"))
            entry["attention_all_threads_speedup"] = one_s / all_s
        if all("times_s" in rows.get(k, {}) for k in ATTENTION_KERNELS):
            torch_att, ov_att = (rows[k]["times_s"][i] for k in ("k_attention_torch", "k_attention_ov"))
            entry["attention_torch_over_ov"] = torch_att / ov_att
        if "square_gemm_int8_tops" in entry:
            entry["graph_shapes_over_square_gemm"] = entry["graph_shapes_int8_tops"] / entry["square_gemm_int8_tops"]
            if "square_gemm_int8_torch_tops" in entry:
                entry["gemm_ov_over_torch"] = entry["square_gemm_int8_tops"] / entry["square_gemm_int8_torch_tops"]
        if "times_s" in rows.get(product, {}):
            entry["product_over_kernel_sum"] = rows[product]["times_s"][i] / total
            entry["torch_over_product"] = torch_s / rows[product]["times_s"][i]
        per_round.append(entry)
    keys = per_round[0].keys()
    return {"per_round": per_round,
            "median": {k: statistics.median(e[k] for e in per_round) for k in keys},
            "range": {k: [min(e[k] for e in per_round), max(e[k] for e in per_round)] for k in keys}}


ROWS = (("attention_s", "attention: equivalents x the faster attention kernel, s", "{:.2f}"),
        ("matmul_s", "weight matmuls at the int8 kernel's rate on the graph's shapes, s", "{:.2f}"),
        ("kernel_sum_s", "kernel sum, s", "{:.2f}"),
        ("product_over_kernel_sum", "**{product} time / kernel sum**", "**{:.2f}**"),
        ("torch_over_kernel_sum", "torch fp32 eager / kernel sum", "{:.2f}x"),
        ("graph_shapes_int8_tops", "int8 rate on the graph's matmul shapes, TOPS", "{:.2f}"),
        ("square_gemm_int8_tops", f"int8 rate on one {GEMM_SIZE}-cubed GEMM, TOPS", "{:.2f}"),
        ("square_gemm_int8_torch_tops", f"int8 rate on the {GEMM_SIZE}-cubed GEMM in torch._int_mm, TOPS", "{:.2f}"),
        ("square_gemm_int8_1thread_tops", f"int8 rate on the {GEMM_SIZE}-cubed GEMM (OpenVINO) on one thread, TOPS",
         "{:.2f}"),
        ("gemm_all_threads_over_one", "square int8 GEMM rate: all threads / one thread (same round)", "{:.2f}x"),
        ("attention_all_threads_speedup", "OpenVINO attention: one thread's time / all threads' (same round)",
         "{:.2f}x"),
        ("attention_torch_over_ov", "attention: torch's time / OpenVINO's (same round)", "{:.2f}x"),
        ("graph_shapes_over_square_gemm", "int8 rate: graph's shapes / square GEMM (same round)", "{:.2f}x"),
        ("gemm_ov_over_torch", "square int8 GEMM rate: OpenVINO / torch._int_mm (same round)", "{:.2f}x"))


def markdown(result: dict[str, Any], reference: str, product: str) -> list[str]:
    """The kernels section of bench_encoder's report (empty when the kernels were not timed)."""
    c = kernel_sum(result, reference, product)
    if c is None:
        return []
    g = result["prepare"]["kernels"]["graph"]
    lines = ["", f"#### {product} against its kernels timed alone (bench/encoder_kernels.py)", "",
             f"Counted from the fp32 IR at this batch: {g['weight_matmul_ops'] / 1e12:.2f} T ops in weight matmuls "
             f"({len(g['weight_matmuls'])} shapes), {g['activation_matmul_ops_outside_attention'] / 1e12:.3f} T in "
             f"other activation matmuls, {g['attention_ops']} attention ops = {g['attention_equivalents']:.2f} full "
             f"attentions of shape {g['attention_shape']} x {g['attention_keys']} keys. Kernel sum per round = "
             "attentions x the faster attention kernel + all matmul ops at the int8 kernel's rate on the graph's "
             "shapes; the rest of the graph is left out.", "",
             "| per round | median | range |", "|---|---:|---:|"]
    for key, label, fmt in ROWS:
        if key in c["median"]:
            lo, hi = c["range"][key]
            lines.append(f"| {label.format(product=product)} | {fmt.format(c['median'][key])} | "
                         f"{fmt.format(lo).strip('*')}-{fmt.format(hi).strip('*')} |")
    ran = [f"{k}: {', '.join(result['routes'][k]['kernels_ran'])}" for k in KERNELS
           if "kernels_ran" in result["routes"].get(k, {})]
    return [*lines, "", "Nodes that ran in the OpenVINO kernels (node type: exec type, from one PERF_COUNT call):", "",
            *[f"- {line}" for line in ran]]
