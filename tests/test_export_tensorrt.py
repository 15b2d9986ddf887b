"""TensorRT: engine cache keys, mismatch detection and clear errors (default); real builds when possible."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from export_support import random_views, session_tiny

from align3d_rt.artifacts.bundle import add_files, load_bundle
from align3d_rt.artifacts.engine_index import ENGINES_DIR, engine_key, select_engine
from align3d_rt.errors import BackendUnavailable, BundleError
from align3d_rt.export.tensorrt_build import build_engine

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
TRT_REASON = "TensorRT not installed (cannot be installed on this machine: its wheels come from a host we cannot reach)"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return session_tiny(tmp_path_factory.getbasetemp() / "export_tiny")


def _fake_engine(bundle_dir: Path, gpu: str, version: str, lo: int = 1, opt: int = 9, hi: int = 18,
                 onnx_sha: str | None = None) -> str:
    """Register a stand-in engine file the way build_engine does (for the selection logic only)."""
    b = load_bundle(bundle_dir)
    key = engine_key(gpu, version, b.image_size, lo, opt, hi)
    rel = f"{ENGINES_DIR}/{key}.engine"
    (bundle_dir / ENGINES_DIR).mkdir(exist_ok=True)
    (bundle_dir / rel).write_bytes(b"not a real engine")
    meta = {"key": key, "file": rel, "gpu_name": gpu, "tensorrt_version": version, "image_size": b.image_size,
            "min_batch": lo, "opt_batch": opt, "max_batch": hi,
            "onnx_sha256": onnx_sha or b.manifest["files"]["encoder.onnx"]}
    add_files(b, [rel], section="engines", entry_key=key, entry=meta)
    return key


def test_engine_key_is_file_safe_and_distinguishes_inputs() -> None:
    k = engine_key("NVIDIA GeForce RTX 4090", "10.13.0.35", 336, 1, 9, 18)
    assert k == "nvidia-geforce-rtx-4090__trt10-13-0-35__s336__b1-9-18"
    assert "/" not in engine_key("A/B GPU", "11.0", 336, 1, 9, 18)
    keys = {engine_key("H100", "11.0", 336, 1, 9, 18), engine_key("H100", "11.1", 336, 1, 9, 18),
            engine_key("A100", "11.0", 336, 1, 9, 18), engine_key("H100", "11.0", 336, 1, 9, 36)}
    assert len(keys) == 4


def test_select_engine_matches_gpu_version_and_batch(tiny: dict[str, Path], tmp_path: Path) -> None:
    b_dir = shutil.copytree(tiny["fp16"], tmp_path / "b")
    with pytest.raises(BundleError, match="no TensorRT engine"):
        select_engine(load_bundle(b_dir), "H100", "11.0")
    small = _fake_engine(b_dir, "NVIDIA H100", "11.0.0", 1, 4, 9)
    large = _fake_engine(b_dir, "NVIDIA H100", "11.0.0", 1, 9, 18)
    b = load_bundle(b_dir)  # hashes of engines verified like every other file
    assert select_engine(b, "NVIDIA H100", "11.0.0", batch=12)[0] == large
    assert select_engine(b, "NVIDIA H100", "11.0.0", key=small)[0] == small
    with pytest.raises(BundleError, match="rebuild") as err:
        select_engine(b, "NVIDIA A100", "11.0.0")
    assert "NVIDIA H100 / TensorRT 11.0.0" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BundleError, match="do not transfer"):
        select_engine(b, "NVIDIA H100", "10.13.0")
    (b_dir / f"{ENGINES_DIR}/{large}.engine").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256 differs"):
        load_bundle(b_dir)


def test_stale_engine_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    b_dir = shutil.copytree(tiny["fp16"], tmp_path / "b")
    _fake_engine(b_dir, "NVIDIA H100", "11.0.0", onnx_sha="0" * 64)
    with pytest.raises(BundleError, match="another encoder.onnx"):
        select_engine(load_bundle(b_dir), "NVIDIA H100", "11.0.0")


def test_build_engine_needs_fp16_bundle(tiny: dict[str, Path]) -> None:
    with pytest.raises(BundleError, match="fp16 bundle") as err:
        build_engine(tiny["fp32"])
    assert "--precision fp16" in str(err.value)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        build_engine(tiny["fp16"], min_batch=4, opt_batch=2, max_batch=8)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_clear_error_when_tensorrt_missing(tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from align3d_rt.cli import main
    from align3d_rt.runtime.tensorrt_backend import TrtBackend

    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        build_engine(tiny["fp16"])
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        TrtBackend(tiny["fp16"]).__enter__()
    rc = main(["export", "--run", str(tiny["run"]), "--out", "/nonexistent/never", "--precision", "fp16", "--tensorrt"])
    assert rc == 2 and not Path("/nonexistent/never").exists()


@pytest.mark.skipif(not _cuda(), reason="no CUDA GPU")
@pytest.mark.skipif(not HAVE_TRT, reason=TRT_REASON)
def test_tensorrt_engine_matches_onnxruntime(tiny: dict[str, Path], tmp_path: Path) -> None:
    from align3d_rt.runtime.onnxruntime_backend import OrtBackend
    from align3d_rt.runtime.tensorrt_backend import TrtBackend

    b_dir = shutil.copytree(tiny["fp16"], tmp_path / "b")
    engine = build_engine(b_dir, min_batch=1, opt_batch=2, max_batch=4, workspace_gb=1.0)
    assert engine.is_file() and json.loads(engine.with_suffix(".json").read_text())["max_batch"] == 4
    assert build_engine(b_dir, min_batch=1, opt_batch=2, max_batch=4) == engine  # cached
    views = random_views(5)
    with TrtBackend(b_dir) as trt_b, OrtBackend(tiny["fp32"]) as ort_b:
        got, ref = trt_b.infer(views), ort_b.infer(views)  # 5 views > max batch 4: split in chunks
    assert got.patch_maps.shape == (5, 2, 24, 24)
    assert np.abs(got.patch_maps - ref.patch_maps).max() < 5e-3


def test_trt_backend_module_is_importable_without_tensorrt() -> None:
    import align3d_rt.runtime.tensorrt_backend as mod

    assert "tensorrt" not in sys.modules or HAVE_TRT
    assert mod.TrtBackend.name == "tensorrt"
