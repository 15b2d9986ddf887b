"""Helpers for the export tests: a training run directory with random aligner weights and text."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from align3d_rt.render.views import RenderSettings

TINY = "align3d-tiny"
TINY_DIM = 128


def make_run_dir(path: Path, clip: str = TINY, weights: str | None = None, dim: int = TINY_DIM, seed: int = 0,
                 fusion_weight: float = 0.5, preset: str = "paper9") -> Path:
    """Write the files the run-directory contract names (config, aligner, prompts, text) with random values."""
    from align3d_rt.artifacts import run_dir as rd
    from align3d_rt.model.graph import aligner_from_state

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    aligner = aligner_from_state(dim, None, seed=seed + 1)
    state = {k: v.detach().numpy().copy() for k, v in aligner.state_dict().items()}
    text = rng.standard_normal((2, 2, dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    settings = RenderSettings(preset=preset)
    weights_id = f"random:{0}" if weights in (None, "random") else weights
    config = {
        "format": rd.RUN_FORMAT, "format_version": rd.RUN_FORMAT_VERSION, "version": "test",
        "dataset": "synthetic", "category": "test",
        "clip": {"name": clip, "weights": weights, "weights_id": weights_id, "init_seed": 0},
        "render_settings": settings.to_dict(), "training": {"seed": seed},
        "seeds": {"training": seed, "clip_init": 0}, "fusion_weight": fusion_weight,
    }
    rd.write_config(path, config)
    rd.save_tensors(path / rd.ALIGNER, state)
    rd.save_tensors(path / rd.PROMPTS_RENDER, {"ctx": rng.standard_normal((12, dim)).astype(np.float32)})
    rd.save_tensors(path / rd.PROMPTS_ALIGNED, {"ctx": rng.standard_normal((12, dim)).astype(np.float32)})
    rd.save_tensors(path / rd.TEXT, {"text": text})
    return path


def random_views(n: int, size: int = 336, seed: int = 0) -> np.ndarray:
    """Gray-ish rendered-looking views: a smooth blob on a dark background (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        shade = np.clip(1.0 - d / r, 0, 1) * 200 + rng.normal(0, 8, (size, size))
        out[i] = np.clip(shade, 0, 255).astype(np.uint8)[..., None]
    return out


_CACHE: dict[str, object] = {}


def session_tiny(tmp_root: Path) -> dict[str, Path]:
    """One tiny run + its fp32 (via the CLI), fp16 and int8 bundles, built once per test session."""
    if "tiny" not in _CACHE:
        from align3d_rt.cli import main
        from align3d_rt.export.onnx_export import export_bundle

        run = make_run_dir(tmp_root / "run")
        out = {"run": run}
        rc = main(["export", "--run", str(run), "--out", str(tmp_root / "b_fp32"), "--precision", "fp32"])
        assert rc == 0
        out["fp32"] = tmp_root / "b_fp32"
        for prec in ("fp16", "int8"):
            out[prec] = export_bundle(run, tmp_root / f"b_{prec}", precision=prec)
        _CACHE["tiny"] = out
    return _CACHE["tiny"]  # type: ignore[return-value]


def session_samples(tmp_root: Path, n: int = 4) -> list:
    """``n`` labelled synthetic samples (good and defective, in turn); the data is generated once per session."""
    if "syn_root" not in _CACHE:
        from align3d_rt.data.synthetic import generate_mvtec_layout

        _CACHE["syn_root"] = generate_mvtec_layout(tmp_root / "syn", categories=["dome"], n_train=0, n_validation=0,
                                                   n_test_good=2, n_per_defect=1, defects=["bump", "hole"],
                                                   size=(120, 120))
    key = f"samples_{n}"
    if key not in _CACHE:
        from align3d_rt.cli.parity import load_data

        _CACHE[key] = load_data([_CACHE["syn_root"]], dataset="synthetic", categories=["dome"], max_samples=n)
    return _CACHE[key]  # type: ignore[return-value]
