"""Heavy: the real ViT-L-14-336 architecture (random weights) exported and run through ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_support import make_run_dir, random_views

from align3d_rt.eval.parity import FP32_MAX_ABS


@pytest.mark.heavy
def test_vit_l_fp32_bundle_matches_torch(tmp_path: Path) -> None:
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.export.onnx_export import export_bundle
    from align3d_rt.runtime.onnxruntime_backend import OrtBackend
    from align3d_rt.runtime.torch_backend import TorchBackend

    run = make_run_dir(tmp_path / "run", clip="ViT-L-14-336", weights="random", dim=768)
    bundle = load_bundle(export_bundle(run, tmp_path / "bundle", precision="fp32"))
    assert bundle.grid_size == 24 and bundle.manifest["clip"]["arch"].startswith("ViT-L-14-336")
    views = random_views(1, seed=11)
    with TorchBackend.from_run(run) as tb:
        ref = tb.infer(views)
    with OrtBackend(bundle) as ob:
        got = ob.infer(views)
    assert got.patch_maps.shape == ref.patch_maps.shape == (1, 2, 24, 24)
    assert np.abs(got.patch_maps - ref.patch_maps).max() <= FP32_MAX_ABS
    assert np.abs(got.global_probs - ref.global_probs).max() <= FP32_MAX_ABS
    assert np.ptp(ref.patch_maps) > 1e-3
