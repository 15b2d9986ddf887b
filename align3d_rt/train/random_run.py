"""A run directory with a seeded random aligner and random unit text embeddings (tests and benchmarks only:
it is no trained model, but it has the real layout, so export and every backend run on it)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


def random_run_dir(out: str | Path, clip: str = "align3d-tiny", clip_weights: str | None = "random",
                   dataset: str = "synthetic", category: str = "dome", seed: int = 0,
                   fusion_weight: float = 0.5, preset: str = "mvtec9", renderer: str = "splat") -> Path:
    """A run directory with a seeded random aligner and random unit text embeddings (tests/benchmarks only)."""
    import torch

    from align3d_rt.artifacts import run_dir as rd
    from align3d_rt.model.aligner import Aligner
    from align3d_rt.model.clip_backbone import embed_dim_for, load_clip, weights_id_for
    from align3d_rt.render.views import settings_for
    from align3d_rt.versions import library_versions

    out = Path(out)
    weights_id = weights_id_for(clip, clip_weights, seed)
    if weights_id is not None and weights_id.startswith("random:"):
        dim = embed_dim_for(clip)  # no need to build the model
    else:
        model, info = load_clip(clip, clip_weights, seed=seed)
        dim, weights_id = int(info.embed_dim), info.weights_id
        del model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        aligner = {k: v.detach().numpy().copy() for k, v in Aligner(dim).state_dict().items()}
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((2, 2, dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    settings = dataclasses.replace(settings_for(dataset, category), preset=preset, renderer=renderer)
    from align3d_rt import __version__

    config = {
        "format": rd.RUN_FORMAT, "format_version": rd.RUN_FORMAT_VERSION, "version": __version__,
        "dataset": dataset, "category": category, "root": "",
        "clip": {"name": clip, "weights": clip_weights, "weights_id": weights_id, "init_seed": seed},
        "render_settings": settings.to_dict(), "training": {"random": True, "seed": seed},
        "seeds": {"training": seed, "clip_init": seed}, "fusion_weight": fusion_weight,
        "libraries": library_versions(), "samples": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    rd.save_tensors(out / rd.ALIGNER, aligner)
    rd.save_tensors(out / rd.TEXT, {"text": text})
    for name in (rd.PROMPTS_RENDER, rd.PROMPTS_ALIGNED):
        rd.save_tensors(out / name, {"random_text": text})
    rd.write_config(out, config)
    return out
