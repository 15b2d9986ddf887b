"""bench/bench_encoder.py itself: the candidate routes and --isa run, and the report says what ran."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("openvino", reason="openvino is not installed")


def test_candidate_routes_under_an_isa_cap(tmp_path: Path) -> None:
    """Tiny CLIP, one view, one round: every asked route is timed in its own process, the cap reaches the
    route processes (no BF16 there: the auto hint runs f32, the bf16 route is skipped with its reason)."""
    out = tmp_path / "r.json"
    routes = "torch_fp32,ov_fp32_bf16,ov_int8,ov_int8_static,ov_int8_mixed,ov_int8w"
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
    md = (tmp_path / "r.md").read_text()
    assert "Instruction sets capped to `avx512_vnni`" in md and "skipped: the CPU (or --isa) has no BF16" in md
    assert "MIXED preset" in md and "static batch shape" in md
