"""Loaders (align3d_rt/loaders.py): the one place sessions are made and models compiled, with their settings."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from export_support import make_run_dir, random_views

from align3d_rt.errors import BundleError
from align3d_rt.loaders import CPU_PROVIDER, OpenVinoCompiler, OrtSessionLoader, openvino_core


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from align3d_rt.export.onnx_export import export_bundle

    root = tmp_path_factory.mktemp("loaders")
    return export_bundle(make_run_dir(root / "run"), root / "bundle")


def test_ort_session_settings_live_in_the_loader() -> None:
    """Threads, log level and the fp16 workaround (ORT_ENABLE_EXTENDED on the CPU provider alone)."""
    ort = pytest.importorskip("onnxruntime")
    level = ort.GraphOptimizationLevel
    cpu = [CPU_PROVIDER]
    fp16 = OrtSessionLoader(Path("g.onnx"), "fp16", threads=2).session_options(ort, cpu)
    assert fp16.graph_optimization_level == level.ORT_ENABLE_EXTENDED and fp16.intra_op_num_threads == 2
    assert fp16.log_severity_level == 3
    fp32 = OrtSessionLoader(Path("g.onnx"), "fp32").session_options(ort, cpu)
    assert fp32.graph_optimization_level == level.ORT_ENABLE_ALL and fp32.intra_op_num_threads == 0
    on_gpu = OrtSessionLoader(Path("g.onnx"), "fp16").session_options(ort, ["CUDAExecutionProvider", CPU_PROVIDER])
    assert on_gpu.graph_optimization_level == level.ORT_ENABLE_ALL and on_gpu.log_severity_level == 4


def test_ort_loader_is_what_the_runner_and_the_export_check_use(onnx_bundle: Path) -> None:
    pytest.importorskip("onnxruntime")
    from align3d_rt.export.onnx_export import run_onnx
    from align3d_rt.runtime.onnxruntime_backend import OrtBackend

    runner = OrtBackend(onnx_bundle, threads=1)
    assert runner.load_session == OrtSessionLoader(runner.bundle.onnx_path, "fp32", 1, None)
    views = random_views(2)
    session = OrtSessionLoader(runner.bundle.onnx_path, threads=1)()  # loading is a step of its own
    assert session.get_providers() == [CPU_PROVIDER]
    maps, _ = session.run(None, {"views": views})
    with runner:
        np.testing.assert_array_equal(runner.infer(views).patch_maps, maps)
    np.testing.assert_array_equal(run_onnx(runner.bundle.onnx_path, views, "fp32")[0], maps)


def test_ort_loader_refuses_a_broken_graph_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "encoder.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(BundleError, match=r"encoder\.onnx: onnxruntime cannot load the encoder") as err:
        OrtSessionLoader(bad)()
    assert "\n" not in str(err.value)


def test_openvino_config_has_every_setting_and_one_cache_folder_per_setting(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN3D_CACHE", str(tmp_path))
    loader = OpenVinoCompiler(Path("encoder.xml"), "CPU", "auto", "THROUGHPUT", num_streams=2, threads=3, cache=True)
    config = loader.config("bf16")
    assert config["PERFORMANCE_HINT"] == "THROUGHPUT" and config["INFERENCE_PRECISION_HINT"] == "bf16"
    assert config["NUM_STREAMS"] == "2" and config["INFERENCE_NUM_THREADS"] == 3
    assert Path(config["CACHE_DIR"]).parent == tmp_path / "openvino"
    assert loader.config("f32")["CACHE_DIR"] != config["CACHE_DIR"]  # an f32 blob never serves a bf16 compile
    plain = OpenVinoCompiler(Path("encoder.xml")).config("f32")
    assert plain == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_openvino_compiler_resolves_the_hint_and_refuses_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "encoder.xml"
    bad.write_text("<net/>")
    with pytest.raises(BundleError, match=r"encoder\.xml: OpenVINO cannot compile the IR for CPU") as err:
        OpenVinoCompiler(bad, "CPU", "f32")()
    assert "\n" not in str(err.value)
    import openvino as ov

    param = ov.opset13.parameter([1, 4], ov.Type.f32, name="x")
    model = ov.Model([ov.opset13.relu(param)], [param], "relu")
    compiled, hint = OpenVinoCompiler(model, "CPU", "auto")()
    caps = openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert hint == ("bf16" if "BF16" in caps else "f32")
    out = compiled(np.array([[-1, 2, -3, 4]], np.float32))[0]
    np.testing.assert_array_equal(out, [[0, 2, 0, 4]])
