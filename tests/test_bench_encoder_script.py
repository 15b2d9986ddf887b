"""bench/bench_encoder.py itself: the candidate routes and --isa run, and the report says what ran."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("openvino", reason="openvino is not installed")


def test_candidate_routes_under_an_isa_cap(tmp_path: Path) -> None:
    """Tiny CLIP, one view, one round: every asked route is timed in its own process, the cap reaches the
    route processes (no BF16 there: the auto hint runs f32, the bf16 route is skipped with its reason)."""
    out = tmp_path / "r.json"
    routes = "torch_fp32,ov_fp32_bf16,ov_int8,ov_int8_static,ov_int8_mixed,ov_int8w,k_attention_ov,k_attention_torch," \
             "k_matmul_int8,k_gemm_int8,k_gemm_int8_torch,k_gemm_int8_1thread,k_attention_ov_1thread"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_encoder.py"), "--clip", "align3d-tiny",
                           "--views", "1", "--rounds", "1", "--routes", routes, "--isa", "avx512_vnni",
                           "--json", str(out), "--md", str(tmp_path / "r.md")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["isa"] == "avx512_vnni" and r["isa_env"]["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_VNNI"
    rows = r["routes"]
    assert rows["ov_fp32_bf16"] == {"skipped": "the CPU (or --isa) has no BF16"}
    for route in ("ov_int8", "ov_int8_static", "ov_int8_mixed", "ov_int8w"):
        row = rows[route]
        assert row["compute_precision"] == "f32", route  # capped: no BF16, whatever the chip reports
        assert len(row["times_s"]) == 1 and row["times_s"][0] > 0 and row["ratio_vs_torch"] > 0, route
        assert 0 < row["max_abs_diff_maps"] < 0.5, route  # an int8 graph of the same model, not garbage
    assert rows["k_attention_torch"]["precision"] == "float32"  # capped: the kernels run f32 as well
    assert rows["k_attention_ov"]["compute_precision"] == rows["k_matmul_int8"]["compute_precision"] == "f32"
    kernels = r["kernel_sum"]
    assert len(kernels["per_round"]) == 1 and kernels["median"]["kernel_sum_s"] > 0
    assert kernels["median"]["torch_over_product"] == pytest.approx(rows["ov_int8"]["ratio_vs_torch"])
    assert kernels["median"]["square_gemm_int8_tops"] > 0 and kernels["median"]["square_gemm_int8_torch_tops"] > 0
    assert any(k.startswith("FullyConnected") for k in rows["k_gemm_int8"]["kernels_ran"])
    assert rows["k_gemm_int8_1thread"]["threads"] == rows["k_attention_ov_1thread"]["threads"] == 1
    assert rows["k_gemm_int8"]["threads"] == rows["k_attention_ov"]["threads"] >= 1  # OpenVINO's own choice
    one_s = rows["k_gemm_int8_1thread"]["times_s"][0]
    assert kernels["median"]["gemm_all_threads_over_one"] == pytest.approx(rows["k_gemm_int8_1thread"]["times_s"][0]
                                                                          / rows["k_gemm_int8"]["times_s"][0])
    assert kernels["median"]["square_gemm_int8_1thread_tops"] * one_s == pytest.approx(
        kernels["median"]["square_gemm_int8_tops"] * rows["k_gemm_int8"]["times_s"][0])
    assert kernels["median"]["attention_all_threads_speedup"] == pytest.approx(
        rows["k_attention_ov_1thread"]["times_s"][0] / rows["k_attention_ov"]["times_s"][0])
    md = (tmp_path / "r.md").read_text()
    again = subprocess.run([sys.executable, str(REPO / "bench" / "bench_encoder.py"), "--render", str(out),
                            "--md", str(tmp_path / "again.md")],
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "again.md").read_text() == md  # the report from the saved JSON alone, the same
    assert "ov_int8 against its kernels timed alone" in md
    assert "Instruction sets capped to `avx512_vnni`" in md and "skipped: the CPU (or --isa) has no BF16" in md
    assert "MIXED preset" in md and "static batch shape" in md


def _sdpa_and_weight_matmuls() -> Path:
    """A model with two weight matmuls (rows 6: 4 -> 8 -> 4), one full attention (2 x 3 x 5 x 8, 5 keys) and one
    class-token attention (1 query row), saved as IR."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([2, 3, 4], np.float32, name="x")
    h = ops.matmul(x, ops.constant(np.ones((4, 8), np.float32)), False, False)  # 2*3 rows x 4 -> 8
    y = ops.matmul(h, ops.constant(np.ones((4, 8), np.float32)), False, True)  # 8 -> 4
    q = ops.reshape(ops.concat([y, y], 2), [2, 1, 3, 8], False)
    q5 = ops.concat([q, ops.slice(q, [0], [2], [1], [2])], 2)  # 5 tokens
    full = ops.scaled_dot_product_attention(q5, q5, q5, causal=False)
    cls = ops.scaled_dot_product_attention(ops.slice(q5, [0], [1], [1], [2]), q5, q5, causal=False)
    model = ov.Model([full, cls], [x], "probe")
    return model


def test_kernel_sum_counts_the_graph_per_round(tmp_path: Path) -> None:
    """graph_work counts weight-matmul ops by shape and attention logits as full-attention equivalents; the
    kernel sum is attentions x the faster kernel + matmul ops at the int8 kernel's rate, per round."""
    import openvino as ov

    sys.path.insert(0, str(REPO / "bench"))
    from encoder_kernels import CHAIN, graph_work, kernel_shapes, kernel_sum

    ov.save_model(_sdpa_and_weight_matmuls(), str(tmp_path / "m.xml"))
    work = graph_work(tmp_path / "m.xml", (2, 3, 4))
    assert work["weight_matmuls"] == [[6, 4, 8, 1], [6, 8, 4, 1]]
    assert work["weight_matmul_ops"] == 2 * (2.0 * 6 * 4 * 8)
    assert work["attention_ops"] == 2 and work["attention_shape"] == [2, 1, 5, 8] and work["attention_keys"] == 5
    assert work["attention_equivalents"] == pytest.approx(1.0 + 1 / 5)  # 1 of 5 query rows
    assert kernel_shapes({"weight_matmuls": [[600, 4, 8, 3], [600, 8, 4, 1], [1, 8, 4, 1]]}) == \
        [(600, 4, 8, 3), (600, 8, 4, 1)]  # in proportion; the 1-row shape is under 1 % of the work
    kernel = {"ops_per_call": work["weight_matmul_ops"]}
    result: dict[str, Any] = {
        "prepare": {"kernels": {"graph": work, "k_matmul_int8": kernel}},
        "routes": {"torch_fp32": {"times_s": [10.0, 12.0]}, "ov_int8": {"times_s": [2.0, 3.0]},
                   "k_attention_ov": {"times_s": [CHAIN * 0.5, CHAIN * 0.4]},
                   "k_attention_torch": {"times_s": [CHAIN * 0.25, CHAIN * 0.8]},
                   "k_matmul_int8": {"times_s": [0.7, 1.0]}}}
    c = kernel_sum(result, "torch_fp32", "ov_int8")
    assert c is not None
    first, second = c["per_round"]
    assert first["kernel_sum_s"] == pytest.approx(1.2 * 0.25 + 0.7)
    assert second["kernel_sum_s"] == pytest.approx(1.2 * 0.4 + 1)
    assert first["torch_over_kernel_sum"] == pytest.approx(10.0 / 1.0)
    assert second["product_over_kernel_sum"] == pytest.approx(3.0 / 1.48)
    assert c["range"]["torch_over_kernel_sum"] == [pytest.approx(12.0 / 1.48), pytest.approx(10.0)]
    assert "square_gemm_int8_tops" not in first  # no square GEMM timed
    assert first["attention_torch_over_ov"] == pytest.approx(0.5)
    assert second["attention_torch_over_ov"] == pytest.approx(2)
    del result["routes"]["k_matmul_int8"]
    assert kernel_sum(result, "torch_fp32", "ov_int8") is None  # no matmul kernel timed: no sum
