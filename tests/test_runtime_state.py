"""Deactivation undoes activation: a runner's state (vars) after activate/infer/deactivate is its state before.

As polygraphy's runner checks do, for every backend this machine can run; the Detector never changes its
runner's settings (it passes its view chunk to ``infer``)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from export_support import make_run_dir, random_views
from infer_eval_support import bump_cloud, fake_detector

from align3d_rt.runtime import registry
from align3d_rt.runtime.base import VIEW_CHUNK, BaseRunner

COUNTERS = {"last_infer_seconds", "total_infer_seconds", "infer_calls"}  # what infer() is meant to change
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny run and one bundle of it: with OpenVINO installed an OpenVINO-format bundle, which holds the
    fp32 encoder.onnx (ONNX Runtime's file) beside the IR; without it an ONNX bundle."""
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.artifacts.run_dir import load_run
    from align3d_rt.export.onnx_export import export_bundle

    root = tmp_path_factory.mktemp("state")
    run = make_run_dir(root / "run")
    with_ir = importlib.util.find_spec("openvino") is not None
    bundle = load_bundle(export_bundle(run, root / "bundle", fmt="openvino" if with_ir else "onnx"))
    return {"run": load_run(run), "onnx": bundle, **({"openvino": bundle} if with_ir else {})}


def _state(runner: BaseRunner) -> dict[str, Any]:
    return {k: v for k, v in vars(runner).items() if k not in COUNTERS}


def _source_for(name: str, sources: dict[str, Any]) -> Any:
    spec = registry.get(name)
    if spec.source == "run":
        return sources["run"]
    fmt = spec.formats[0]
    if fmt not in sources:
        pytest.skip(f"{fmt} is not installed here")
    return sources[fmt]


@pytest.mark.parametrize("name", registry.list_backends())
def test_deactivate_restores_the_state_before_activate(name: str, sources: dict[str, Any]) -> None:
    spec = registry.get(name)
    if "cpu" not in spec.devices:
        pytest.skip(f"{name} runs on CUDA GPUs only: TensorRT cannot be installed on this machine (no NVIDIA GPU)")
    runner = registry.create_runner(name, _source_for(name, sources), device="cpu")
    before = _state(runner)
    for _ in range(2):  # and again: activation after a deactivation starts from the same state
        with runner:
            out = runner.infer(random_views(3), max_views=2)
            assert out.patch_maps.shape[0] == 3 and _state(runner) != before  # activation did set something
        assert _state(runner) == before, name
    assert runner.infer_calls == 2


def test_trt_profile_is_not_kept_after_deactivation() -> None:
    """TensorRT keeps its engine's batch profile apart from the caller's max_batch and drops it (and the
    runtime) on deactivation; its hooks are checked here without a GPU."""
    from align3d_rt.runtime.tensorrt_backend import TrtBackend

    runner = TrtBackend.__new__(TrtBackend)
    BaseRunner.__init__(runner, max_batch=5, device="cuda")
    runner.min_batch, runner._engine_max_batch, runner._runtime = 2, 18, object()
    runner._engine = runner._context = runner._io = object()
    runner._dtypes = {"x": np.dtype(np.float32)}
    runner._deactivate_impl()
    assert runner.max_batch == 5 and runner._batch_limit() is None and runner.min_batch == 1
    assert runner._runtime is None and runner._engine is None and runner._dtypes == {}


def test_detector_leaves_the_runner_settings_alone() -> None:
    """The Detector's view chunk bounds each encoder call without rewriting the runner's max_batch."""
    det, backend = fake_detector(view_chunk=4)
    backend.max_batch = 6
    with det:
        det.score([bump_cloud(20, seed=1)], keep_render=False)  # mvtec9: 9 views
    assert backend.max_batch == 6 and backend.calls == [4, 4, 1]
    det, backend = fake_detector(view_chunk=VIEW_CHUNK)
    with det:
        det.score([bump_cloud(20, seed=s) for s in range(5)], keep_render=False)  # 45 views
    assert backend.max_batch is None and backend.calls == [VIEW_CHUNK, 45 - VIEW_CHUNK]


def test_view_chunk_is_one_named_setting() -> None:
    """Python's VIEW_CHUNK is the number the C++ inspector reads (cpp/src/encoder.hpp) and the spec names."""
    import re

    header = (REPO / "cpp" / "src" / "encoder.hpp").read_text()
    assert re.search(r"constexpr int kViewChunk = (\d+);", header).group(1) == str(VIEW_CHUNK)
    cpp = "".join(p.read_text() for p in (REPO / "cpp" / "src").glob("*.cpp"))
    assert "kViewChunk" in cpp and not re.search(r"\b36\b", cpp)
    assert f"`VIEW_CHUNK = {VIEW_CHUNK}`" in (REPO / "docs" / "runtime-spec.md").read_text()
