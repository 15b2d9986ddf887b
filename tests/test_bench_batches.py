"""Batches of clouds (issue 20, item 3): `infer --batch-size` > 1 selects OpenVINO's THROUGHPUT hint, the
bench's batch section reports the gain or its absence, and the C++ inspector row runs the bundle of the
Python OpenVINO row of its precision."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.cli.options import throughput_for_batches
from align3d_rt.eval.bench.batches import batch_lines
from align3d_rt.runtime import registry


def _args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"backend": "openvino", "run": None, "performance_hint": None, "triton": None,
                                 **given})


def test_batch_size_selects_throughput_only_where_it_applies() -> None:
    cases = [(_args(), 2, "THROUGHPUT"), (_args(), 1, None), (_args(performance_hint="LATENCY"), 4, "LATENCY"),
             (_args(backend="onnxruntime"), 4, None), (_args(triton="http://h:8000"), 4, None)]
    for args, batch, want in cases:
        throughput_for_batches(args, batch)
        assert args.performance_hint == want, (vars(args), batch)


def _kind(fps: dict[str, float]) -> dict[str, object]:
    best = max(fps, key=lambda b: fps[b])
    return {"stream": {b: {"fps": v} for b, v in fps.items()}, "fps_batch1": fps["1"], "fps_best": fps[best],
            "best_batch": int(best)}


def test_batch_section_states_the_gain_or_why_there_is_none() -> None:
    detector = {"performance_hint": "THROUGHPUT", "infer_requests": 2}
    report = {"machine": {"usable_cores": 2}, "views": 9, "rows": [
        {"status": "ok", "label": "gains", "detector": detector, "by_kind": {"mvtec": _kind({"1": 1.0, "2": 1.5})}},
        {"status": "ok", "label": "flat", "detector": {"performance_hint": "LATENCY", "infer_requests": 1},
         "by_kind": {"real3d": _kind({"1": 1.0, "2": 1.02, "4": 0.9})}},
        {"status": "ok", "label": "cpp", "by_kind": {"mvtec": {"fps_batch1": 1.2, "fps_best": 1.2, "best_batch": 1,
                                                               "fps_warm": 1.2, "fps_per_process": 0.7}}},
        {"status": "failed", "label": "broken", "by_kind": {}}]}
    lines = batch_lines(report)
    gains = next(ln for ln in lines if ln.startswith("| gains |"))
    flat = next(ln for ln in lines if ln.startswith("| flat |"))
    assert "| 1.000 | 1.500 | – |" in gains
    assert "batch 2: 1.50x batch 1 (THROUGHPUT, 2 infer request(s); 2 usable" in gains
    assert "no gain: best 2 at 1.02x batch 1 (LATENCY, 1 infer request(s); 2 usable cores: one cloud's 9 views" in flat
    cpp = next(ln for ln in lines if ln.startswith("| cpp |"))
    assert "| – | – | – | one process, one cloud per call: 1.200/s once started, 0.700/s with its start-up |" in cpp
    assert not any("broken" in ln for ln in lines)
    assert batch_lines({"machine": {}, "rows": [{"status": "ok", "label": "x", "by_kind": {}}]}) == []


def test_inspector_row_runs_the_python_openvino_rows_bundle(tmp_path: Path) -> None:
    from align3d_rt.eval.bench import rows as rowlib

    spec = registry.get("openvino")
    for precision in ("int8", "fp32"):
        row = rowlib.inspector_row(tmp_path / "align3d-inspect", precision)
        py = [v for v in spec.bench_variants() if v.precision == precision]
        assert row.export_format == "openvino" and row.precision == precision
        assert all(dict(v.export_options) == row.export_options for v in py)  # one bundle folder for all of them
    assert rowlib.all_rows("cpu", False, None)[-1].precision == "int8"  # the default: the fastest route
    row = rowlib.inspector_row(tmp_path / "align3d-inspect", "int8", "THROUGHPUT")
    assert row.options == {"performance_hint": "THROUGHPUT"} and "THROUGHPUT" in row.label


def test_infer_batches_of_clouds_match_one_at_a_time(tmp_path: Path) -> None:
    """--batch-size 3 (THROUGHPUT: the views of 3 clouds in one call, split over infer requests) scores as batch 1."""
    pytest.importorskip("openvino")
    from export_support import make_run_dir
    from infer_eval_support import bump_cloud

    from align3d_rt.cli import main

    run = make_run_dir(tmp_path / "run", preset="mvtec9")
    bundle = tmp_path / "ov"
    assert main(["export", "--run", str(run), "--out", str(bundle), "--format", "openvino"]) == 0
    for i in range(3):
        np.save(tmp_path / f"c{i}.npy", bump_cloud(20, seed=i).points)
    files = [str(tmp_path / f"c{i}.npy") for i in range(3)]
    for batch in ("1", "3"):
        assert main(["infer", *files, "--bundle", str(bundle), "--backend", "openvino", "--precision-hint", "f32",
                     "--out", str(tmp_path / f"b{batch}"), "--batch-size", batch, "--no-ply", "--no-png"]) == 0
    one, three = (json.loads((tmp_path / f"b{b}" / "scores.json").read_text())["samples"] for b in ("1", "3"))
    assert set(one) == set(three) == {"c0", "c1", "c2"}
    for key in one:
        assert three[key]["timings"]["batch_size"] == 3.0
        assert abs(one[key]["object_score"] - three[key]["object_score"]) <= 1e-4
        np.testing.assert_allclose(np.load(tmp_path / "b3" / f"{key}.scores.npy"),
                                   np.load(tmp_path / "b1" / f"{key}.scores.npy"), atol=1e-4)
