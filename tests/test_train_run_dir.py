"""Run directory: torch-free load_run round trip, clear errors, exact checkpoint/optimizer round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.artifacts import run_dir as rd
from align3d_rt.errors import RunDirError
from align3d_rt.render.views import RenderSettings


def _fake_run(path: Path, dim: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    settings = RenderSettings(preset="mvtec9", point_size=7)
    rd.write_config(path, {
        "format": rd.RUN_FORMAT, "format_version": rd.RUN_FORMAT_VERSION, "version": "0.1.0",
        "clip": {"name": "align3d-tiny", "weights": None, "weights_id": "random:0"},
        "render_settings": settings.to_dict(), "fusion_weight": 0.3,
    })
    rd.save_tensors(path / rd.ALIGNER, {"global_mlp.0.weight": rng.random((dim, dim), dtype=np.float32)})
    rd.save_tensors(path / rd.PROMPTS_RENDER, {"ctx": np.zeros((2, 3), np.float32)})
    rd.save_tensors(path / rd.PROMPTS_ALIGNED, {"ctx": np.ones((2, 3), np.float32)})
    text = rng.random((2, 2, dim), dtype=np.float32)
    rd.save_tensors(path / rd.TEXT, {"text": text})
    return text


def test_load_run_round_trip(tmp_path: Path) -> None:
    text = _fake_run(tmp_path)
    art = rd.load_run(tmp_path)
    assert art.clip_name == "align3d-tiny" and art.clip_weights is None and art.clip_weights_id == "random:0"
    assert art.render_settings == RenderSettings(preset="mvtec9", point_size=7)
    assert art.fusion_weight == pytest.approx(0.3)
    np.testing.assert_array_equal(art.text, text)
    assert art.text.dtype == np.float32 and art.aligner_state["global_mlp.0.weight"].shape == (8, 8)


def test_load_run_is_torch_free(tmp_path: Path) -> None:
    import subprocess
    import sys

    _fake_run(tmp_path)
    code = ("import sys; sys.modules['torch'] = None\n"
            "from align3d_rt.artifacts.run_dir import load_run\n"
            "import align3d_rt.cli.train, align3d_rt.train.runner, align3d_rt.train.feature_cache\n"
            f"a = load_run({str(tmp_path)!r}); print(a.text.shape)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "(2, 2, 8)" in res.stdout


def test_load_run_errors(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a training run"):
        rd.load_run(tmp_path)
    _fake_run(tmp_path)
    (tmp_path / rd.TEXT).unlink()
    with pytest.raises(RunDirError, match="incomplete run.*--resume"):
        rd.load_run(tmp_path)
    _fake_run(tmp_path)
    (tmp_path / rd.ALIGNER).write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(RunDirError, match="corrupt safetensors"):
        rd.load_run(tmp_path)
    _fake_run(tmp_path)
    cfg = json.loads((tmp_path / rd.CONFIG).read_text())
    cfg["format_version"] = 99
    (tmp_path / rd.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(RunDirError, match="version 99") as info:
        rd.load_run(tmp_path)
    assert "\n" not in str(info.value) and "re-train" in str(info.value)


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from align3d_rt.train.checkpoint import read_checkpoint, restore_checkpoint, save_checkpoint

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.GELU(), torch.nn.Linear(3, 2))
        return m, torch.optim.Adam(m.parameters(), lr=1e-2, betas=(0.5, 0.999))

    def step(m: torch.nn.Module, opt: torch.optim.Optimizer, k: int) -> None:
        g = torch.Generator().manual_seed(k)
        x = torch.randn(5, 4, generator=g)
        opt.zero_grad()
        m(x).pow(2).sum().backward()
        opt.step()

    ref, ref_opt = make()
    for k in range(6):
        step(ref, ref_opt, k)
    m, opt = make()
    for k in range(3):
        step(m, opt, k)
    save_checkpoint(tmp_path, 2, 3, {"net": m}, opt, [{"epoch": 3}])
    m2, opt2 = make()
    ckpt = read_checkpoint(tmp_path, 2)
    assert ckpt is not None and ckpt.epoch == 3 and ckpt.history == [{"epoch": 3}]
    restore_checkpoint(ckpt, {"net": m2}, opt2)
    for k in range(3, 6):
        step(m2, opt2, k)
    for a, b in zip(ref.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    # a corrupted checkpoint file is detected
    file = tmp_path / "checkpoints" / ckpt.meta["file"]
    file.write_bytes(file.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(RunDirError, match="corrupt"):
        read_checkpoint(tmp_path, 2)


def test_run_format_1_is_refused_with_the_aligner_reason(tmp_path: Path) -> None:
    """Runs of format 1 trained the aligner on unnormalised features: refused (one line), not migrated."""
    _fake_run(tmp_path)
    cfg = json.loads((tmp_path / rd.CONFIG).read_text())
    cfg["format_version"] = 1
    (tmp_path / rd.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(RunDirError, match="run format version 1 feeds the aligner unnormalised") as info:
        rd.load_run(tmp_path)
    assert "\n" not in str(info.value) and "cannot be converted numerically; re-train" in str(info.value)
