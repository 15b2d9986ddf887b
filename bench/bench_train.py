"""Training benchmark: one stage-2 epoch with features cached vs not cached (render + encode inside the epoch).

A small generated category (MVTec layout), on this CPU. The CLIP is the tiny random one ('align3d-tiny')
by default: its features are NOT ViT-L's, so the ratio understates what the cache saves with the real
encoder (whose forward pass is ~100x longer); ``--clip ViT-L-14-336`` measures with the real architecture
(random weights; minutes per epoch on a CPU). The CLIP used is printed with the figures.
Not cached = every batch loads its samples, renders the gray views and runs the frozen DPAM encoder
before the training step, which is what the cache removes. The first (cached) epoch is a warm-up.

    .venv/bin/python bench/bench_train.py [--samples 7] [--image-size 336] [--repeats 2] [--clip align3d-tiny]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from align3d_rt.train.batches import Stage2Batch


def measure(samples: int, image_size: int, repeats: int, clip: str = "align3d-tiny") -> dict[str, float]:
    import torch

    from align3d_rt.data.readers import list_samples
    from align3d_rt.data.synthetic import generate_mvtec_layout
    from align3d_rt.render.views import settings_for
    from align3d_rt.train.batches import collate_stage2, load_stage2_batch
    from align3d_rt.train.feature_cache import FeatureCache, render_and_encode
    from align3d_rt.train.runner import select_samples
    from align3d_rt.train.stage1 import new_aligner
    from align3d_rt.train.stage2 import Stage2Settings, make_optimizer, new_prompt_learners, run_stage2_epoch

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ALIGN3D_CACHE"] = str(Path(tmp) / "cache")
        root = generate_mvtec_layout(Path(tmp) / "data", categories=["dome"], n_train=0, n_validation=0,
                                     n_test_good=max(1, samples // 3), n_per_defect=1, seed=0)
        refs = select_samples(list_samples("synthetic", root, "dome", "test"), samples)
        settings = dataclasses.replace(settings_for("synthetic", "dome"), image_size=image_size)
        cache = FeatureCache(clip, None, settings)
        t0 = time.perf_counter()
        entries = cache.prepare(refs, need_rgb=False)
        t_build = time.perf_counter() - t0
        encoder = cache.encoder
        cfg = Stage2Settings(epochs=1, dpca_epochs=1)
        aligner = new_aligner(encoder.info.embed_dim, 0)

        def cached(idx: list[int]) -> Stage2Batch:
            return load_stage2_batch([entries[i] for i in idx])

        def uncached(idx: list[int]) -> Stage2Batch:
            records = [render_and_encode(refs[i].load(), settings, encoder)[0] for i in idx]
            return collate_stage2(records)

        def epoch(load: Callable[[list[int]], Stage2Batch]) -> float:
            prompts = new_prompt_learners(encoder.model, 0)
            opt = make_optimizer(prompts, cfg)
            t = time.perf_counter()
            run_stage2_epoch(0, len(entries), load, aligner, prompts, opt, cfg)
            return time.perf_counter() - t

        epoch(cached)  # warm-up (allocator, numba caches)
        runs: dict[str, list[float]] = {"cached": [], "uncached": []}
        for _ in range(repeats):  # interleaved, so load from other processes hits both alike
            runs["cached"].append(epoch(cached))
            runs["uncached"].append(epoch(uncached))
        t_cached, t_uncached = min(runs["cached"]), min(runs["uncached"])
    return {"clip": clip, "samples": len(refs), "image_size": image_size, "threads": torch.get_num_threads(),
            "cache_build_s": t_build, "epoch_cached_s": t_cached, "epoch_uncached_s": t_uncached,
            "ratio": t_uncached / t_cached}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=7)
    p.add_argument("--image-size", type=int, default=336)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clip", default="align3d-tiny",
                   help="CLIP architecture (random weights; default the tiny one; ViT-L-14-336 for the real encoder)")
    args = p.parse_args(argv)
    r = measure(args.samples, args.image_size, args.repeats, clip=args.clip)
    what = "tiny random CLIP, not ViT-L features" if r["clip"] == "align3d-tiny" else f"{r['clip']} (random weights)"
    print(f"stage-2 epoch, {r['samples']} samples x 9 views at {r['image_size']}, {what}, "
          f"{r['threads']} torch threads")
    print(f"  cache build (render + encode once): {r['cache_build_s']:.2f} s")
    print(f"  epoch with cached features:         {r['epoch_cached_s']:.2f} s")
    print(f"  epoch rendering + encoding inside:  {r['epoch_uncached_s']:.2f} s")
    print(f"  uncached / cached:                  {r['ratio']:.2f}x   (best of {args.repeats} interleaved runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
