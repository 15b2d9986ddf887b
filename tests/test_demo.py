"""The offline demo: command registration (fast) and a quick end-to-end run (heavy)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from align3d_rt.cli import build_parser
from align3d_rt.cli.demo import DemoConfig, run_demo, run_demo_cmd


def test_demo_command_registered() -> None:
    args = build_parser().parse_args(["demo", "--out", "x", "--quick", "--precisions", "fp32"])
    assert args.func is run_demo_cmd and args.precisions == ["fp32"] and args.quick
    quick = DemoConfig(out=Path("x")).quick()
    assert quick.epochs1 < DemoConfig(out=Path("x")).epochs1 and len(quick.categories) == 3


@pytest.mark.heavy
def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    """Quick demo: data, training, torch eval, fp32 export + ONNX Runtime eval, report.md + manifest."""
    cfg = DemoConfig(out=tmp_path / "demo", precisions=("fp32",), progress=False).quick()
    report = run_demo(cfg)
    text = report.read_text()
    assert "## Backends side by side" in text and "O-R onnxruntime-fp32" in text and "## torch" in text
    torch_json = json.loads((cfg.out / "eval_torch" / "results.json").read_text())
    ort_json = json.loads((cfg.out / "eval_onnxruntime_fp32" / "results.json").read_text())
    assert (sorted(c["category"] for c in torch_json["classes"])
            == sorted(c for c in cfg.categories if c != cfg.train_category))
    # fp32 ONNX Runtime reproduces the torch reference
    for a, b in zip(torch_json["classes"], ort_json["classes"], strict=True):
        for key in ("O-R", "P-R", "P-R (pt)"):
            assert a["metrics"][key] == pytest.approx(b["metrics"][key], abs=0.01)
    man = json.loads((cfg.out / "manifest.json").read_text())
    ir = {"openvino-int8"} if importlib.util.find_spec("openvino") else set()
    assert man["clip_name"] == "align3d-tiny" and set(man["bundles"]) == {"fp32"} | ir
    if ir:  # the OpenVINO int8 IR evaluated beside torch and ONNX Runtime
        assert "O-R openvino-int8" in text and (cfg.out / "eval_openvino_int8" / "results.json").is_file()
    assert (cfg.out / "eval_torch" / "results_contact_sheet.png").is_file()
    # decisions: a calibration per unseen shape on its own good train parts, the operating-point table,
    # result pages of the example parts
    assert "## Decisions at the operating point (torch)" in text and "false reject" in text
    unseen = [c for c in cfg.categories if c != cfg.train_category]
    for cat in unseen:
        cal = json.loads((cfg.out / "eval_torch" / "results_calibrations" / f"{cat}.json").read_text())
        assert cal["n_good"] == cfg.n_calibration and cal["rule"]["name"] == "conformal"
    for c in torch_json["classes"]:
        assert c["operating"]["n_good"] == cfg.n_test_good and c["operating"]["false_reject_range"] is not None
    assert (cfg.out / "pages" / "index.html").is_file()
    assert len(list((cfg.out / "pages").glob("*.html"))) == 2 * len(unseen) + 1
    assert "(pages/index.html)" in text
