"""Typed vocabulary: str-valued enums with one alias parser, typed backend options, the frozen DetectorInfo."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from infer_eval_support import bump_cloud, shared_tiny_run

from align3d_rt.errors import Align3DError, OptionError
from align3d_rt.runtime import registry
from align3d_rt.runtime.detector_info import DetectorInfo
from align3d_rt.vocabulary import ExportFormat, PerformanceHint, Precision, PrecisionHint, Source, parse


def test_members_read_as_the_plain_words() -> None:
    text = json.dumps({"p": Precision.INT8_WEIGHTS, "f": ExportFormat.OPENVINO})
    assert text == '{"p": "int8-weights", "f": "openvino"}'
    assert f"{Source.BUNDLE}" == "bundle" and PrecisionHint.F32 == "f32"


def test_words_everywhere_come_from_the_enums() -> None:
    from align3d_rt.artifacts.bundle import IR_SECTION, PRECISIONS
    from align3d_rt.export.openvino_export import EXPORT_FORMATS, IR_PRECISIONS

    assert PRECISIONS == ("fp32", "fp16", "int8") and IR_PRECISIONS == ("fp32", "int8", "int8-weights")
    assert EXPORT_FORMATS == ("onnx", "openvino") and ExportFormat.OPENVINO == IR_SECTION
    assert registry.get("openvino").precisions == IR_PRECISIONS and registry.SOURCES == ("run", "bundle")


@pytest.mark.parametrize("text, member", [("fp32", PrecisionHint.F32), ("BFloat16", PrecisionHint.BF16),
                                          ("F16", PrecisionHint.F16), ("auto", PrecisionHint.AUTO)])
def test_one_parser_takes_case_and_aliases(text: str, member: PrecisionHint) -> None:
    assert parse(PrecisionHint, text, "hint") is member


def test_parser_refuses_in_one_bad_input_line() -> None:
    with pytest.raises(OptionError, match=r"^--x 'int4' is not one of auto, bf16, f16, f32$"):
        parse(PrecisionHint, "int4", "--x")
    with pytest.raises(OptionError, match="not one of fp32, int8$"):
        parse(Precision, "fp16", "p", (Precision.FP32, Precision.INT8))
    assert issubclass(OptionError, Align3DError)  # the CLI's exit 2, one line


def test_backend_specs_declare_typed_options_and_are_built_with_keywords() -> None:
    ov = registry.get("openvino")
    assert ov.option("performance_hint").choices is PerformanceHint and ov.option("threads").type is int
    assert registry.parse_option("openvino", "performance_hint", "throughput") is PerformanceHint.THROUGHPUT
    with pytest.raises(OptionError, match="openvino: threads 'two' is not an integer"):
        registry.parse_option("openvino", "threads", "two")
    with pytest.raises(TypeError):
        registry.BackendSpec("x", "m", "R", "bundle", ("cpu",), ("fp32",), "hint", "summary")  # type: ignore[misc]


def test_cli_choices_come_from_the_specs() -> None:
    from align3d_rt.cli import build_parser

    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["infer"]._actions}
    assert tuple(actions["precision_hint"].choices) == registry.option_choices("precision_hint") == tuple(PrecisionHint)
    assert tuple(actions["performance_hint"].choices) == tuple(PerformanceHint)
    spec = registry.BackendSpec(name="fakehint", module="infer_eval_support", runner="FakeBackend", source="bundle",
                                devices=("cpu",), precisions=("fp32",), install_hint="-", summary="a test backend",
                                options=(registry.RunnerOption("performance_hint", str, PerformanceHint),))
    registry.register(spec)
    try:
        assert "fakehint" in registry.backends_with_option("performance_hint")
    finally:
        registry.unregister("fakehint")


def test_detector_info_to_dict_is_the_json_it_replaces() -> None:
    """Key order and content as the dict the Detector kept (scores.json unchanged); runner entries last."""
    run = DetectorInfo(source=Source.RUN, run_dir="/r", backend="torch", device="cpu", precision=Precision.FP32,
                       clip_name="c", clip_weights_id="w", seeds=None, run_config={"a": 1})
    assert list(run.to_dict()) == ["source", "run_dir", "backend", "device", "precision", "clip_name",
                                   "clip_weights_id", "seeds", "run_config"]
    active = run.with_runner({"compute_precision": PrecisionHint.BF16, "torch_compile": False})
    assert json.dumps(active.to_dict()) == json.dumps({**run.to_dict(), "compute_precision": "bf16",
                                                       "torch_compile": False})
    bundle = DetectorInfo(source="bundle", bundle_dir="/b", backend="openvino", device="cpu", precision="fp32",
                          bundle_hash="h", bundle_manifest={})
    ov = bundle.with_runner({"precision": "int8", "compute_precision": "f32", "openvino_device": "CPU"})
    assert list(ov.to_dict()) == ["source", "bundle_dir", "backend", "device", "precision", "bundle_hash",
                                  "clip_name", "clip_weights_id", "seeds", "bundle_manifest", "compute_precision",
                                  "openvino_device"]
    assert ov["precision"] == "int8" and ov.compute_precision == "f32" and "bundle_hash" in ov
    with pytest.raises(dataclasses.FrozenInstanceError):
        ov.precision = "fp16"  # type: ignore[misc]
    plain = {"backend": "fake", "device": "cpu"}
    assert DetectorInfo.from_dict(plain).to_dict() == plain


def test_scores_json_records_the_compute_precision(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """infer describes the detector once its runner is active: the runner's compute precision is in scores.json."""
    from align3d_rt.cli import main

    np.save(tmp_path / "a.npy", bump_cloud(20, seed=3).points)
    out = tmp_path / "out"
    run = shared_tiny_run(tmp_path_factory)
    assert main(["infer", str(tmp_path / "a.npy"), "--run", str(run), "--out", str(out), "--no-ply", "--no-png",
                 "--precision-hint", "f32"]) == 0
    detector = json.loads((out / "scores.json").read_text())["detector"]
    assert detector["compute_precision"] == "f32" and detector["torch_compile"] is False
    assert detector["source"] == "run" and detector["precision"] == "fp32" and "run_config" not in detector
