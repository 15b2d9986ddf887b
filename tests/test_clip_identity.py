"""Issue #13 item 6: CLIP weights are identified by their tensors, so a moved file or another format of the
same weights is recognised, and --clip-weights on infer/eval/export points at them."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from infer_eval_support import bump_cloud

from align3d_rt.cli import main
from align3d_rt.model.clip_backbone import load_clip


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny CLIP (seed 5) as OpenAI-style TorchScript .pt and as safetensors; another one (seed 6)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("clip_weights")
    model, _ = load_clip("align3d-tiny", seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(root / "tiny.pt"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "tiny.safetensors"))
    other, _ = load_clip("align3d-tiny", seed=6)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(root / "other.safetensors"))
    return {"pt": root / "tiny.pt", "st": root / "tiny.safetensors", "other": root / "other.safetensors"}


def test_same_tensors_same_identity_across_formats(weights: dict[str, Path], tmp_path: Path) -> None:
    from align3d_rt.io_utils import sha256_file

    _, a = load_clip("align3d-tiny", weights=str(weights["pt"]))
    _, b = load_clip("align3d-tiny", weights=str(weights["st"]))
    _, c = load_clip("align3d-tiny", weights=str(weights["other"]))
    assert sha256_file(weights["pt"]) != sha256_file(weights["st"])  # the files differ...
    assert a.weights_id == b.weights_id and a.weights_id.startswith("tensors-sha256:")  # ...the weights do not
    assert c.weights_id != a.weights_id
    moved = tmp_path / "renamed" / "x.safetensors"
    moved.parent.mkdir()
    shutil.copy(weights["st"], moved)
    _, d = load_clip("align3d-tiny", weights=str(moved))
    assert d.weights_id == a.weights_id and d.weights_path == str(moved.resolve())


def test_tensor_digest_covers_name_dtype_shape_bytes() -> None:
    from align3d_rt.model.weights_identity import tensor_digest

    base = {"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float32)}
    d0 = tensor_digest(base)
    assert tensor_digest(dict(reversed(list(base.items())))) == d0  # order of entries does not matter
    for changed in ({"a2": base["a"], "b": base["b"]}, {"a": base["a"].astype(np.float64), "b": base["b"]},
                    {"a": base["a"].reshape(3, 2), "b": base["b"]}, {"a": base["a"] + 1, "b": base["b"]}):
        assert tensor_digest(changed) != d0


def test_moved_weights_found_with_clip_weights(weights: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.train.random_run import random_run_dir

    src = tmp_path / "w" / "tiny.pt"
    src.parent.mkdir()
    shutil.copy(weights["pt"], src)
    run = random_run_dir(tmp_path / "run", clip_weights=str(src))
    config = json.loads((run / "config.json").read_text())
    assert config["clip"]["weights_id"].startswith("tensors-sha256:")
    cloud = tmp_path / "c.npy"
    np.save(cloud, bump_cloud(12, seed=1).points)
    src.unlink()  # the user moved the weights
    base = ["infer", str(cloud), "--run", str(run), "--no-png", "--no-ply"]
    assert main([*base, "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0] and "--clip-weights" in err[0]
    # the same weights as safetensors, somewhere else: recognised
    assert main([*base, "--out", str(tmp_path / "o2"), "--clip-weights", str(weights["st"])]) == 0
    scores = json.loads((tmp_path / "o2" / "scores.json").read_text())
    assert "c" in scores["samples"]
    capsys.readouterr()
    # other weights: refused, one line
    assert main([*base, "--out", str(tmp_path / "o3"), "--clip-weights", str(weights["other"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained with CLIP weights tensors-sha256:" in err[0]
    # export takes the option too, and records the resolved path
    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(run), "--out", str(bundle), "--clip-weights", str(weights["st"])]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["clip"]["weights"] == str(weights["st"].resolve())
    assert manifest["clip"]["weights_id"] == config["clip"]["weights_id"]
