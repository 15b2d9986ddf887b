"""TorchBackend: the BaseRunner contract over EncoderGraph, and building it from a run directory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from align3d_rt.errors import RunDirError
from align3d_rt.model.aligner import Aligner
from align3d_rt.model.graph import build_encoder_graph
from align3d_rt.runtime.base import BaseRunner
from align3d_rt.runtime.torch_backend import TorchBackend

TEXT = np.random.default_rng(0).standard_normal((2, 2, 128)).astype(np.float32)


@pytest.fixture(scope="module")
def views() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (3, 336, 336, 3), dtype=np.uint8)


def test_protocol_batches_and_timing(views: np.ndarray) -> None:
    graph = build_encoder_graph("align3d-tiny", None, None, TEXT)
    backend = TorchBackend(graph, batch_size=2)
    assert isinstance(backend, BaseRunner) and backend.name == "torch"
    with backend as b:
        out = b.infer(views)
        empty = b.infer(views[:0])
    assert out.patch_maps.shape == (3, 2, 24, 24) and out.global_probs.shape == (3, 2)
    assert out.patch_maps.dtype == np.float32 and out.global_probs.dtype == np.float32
    assert backend.last_infer_seconds > 0
    with torch.inference_mode():
        maps, probs = graph(torch.from_numpy(views))
    np.testing.assert_allclose(out.patch_maps, maps.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.global_probs, probs.numpy(), atol=1e-6)
    assert ((out.patch_maps > 0) & (out.patch_maps < 1)).all()
    assert empty.patch_maps.shape == (0, 2, 24, 24) and empty.global_probs.shape == (0, 2)


def _fake_run(tmp_path: Path, weights_id: str) -> Path:
    """A run directory in the train.run_dir layout (written with its own helpers)."""
    from align3d_rt.artifacts import run_dir as rd
    from align3d_rt.render.views import settings_for

    run = tmp_path / "run"
    run.mkdir(parents=True)
    torch.manual_seed(4)
    aligner = {k: v.numpy() for k, v in Aligner(128).state_dict().items()}
    rd.save_tensors(run / rd.ALIGNER, aligner)
    rd.save_tensors(run / rd.TEXT, {"text": TEXT})
    for f in (rd.PROMPTS_RENDER, rd.PROMPTS_ALIGNED):
        rd.save_tensors(run / f, {"ctx": np.zeros((2, 12, 128), np.float32)})
    rd.write_config(run, {
        "format": rd.RUN_FORMAT, "format_version": rd.RUN_FORMAT_VERSION,
        "clip": {"name": "align3d-tiny", "weights": None, "weights_id": weights_id},
        "render_settings": settings_for("mvtec3d", "bagel").to_dict(), "fusion_weight": 0.5,
    })
    return run


def test_from_run(tmp_path: Path, views: np.ndarray) -> None:
    run = _fake_run(tmp_path, "random:0")
    backend = TorchBackend.from_run(run)
    assert backend.graph.info.weights_id == "random:0"
    assert torch.equal(backend.graph.text, torch.from_numpy(TEXT))
    with backend:
        out = backend.infer(views[:1])
    assert out.patch_maps.shape == (1, 2, 24, 24)

    bad = _fake_run(tmp_path / "b", "0" * 64)
    with pytest.raises(RunDirError, match="trained with CLIP weights"):
        TorchBackend.from_run(bad)
