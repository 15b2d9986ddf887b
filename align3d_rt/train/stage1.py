"""Stage 1: train the Aligner (rendering features -> RGB features) on cached CLIP features."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from align3d_rt import distributed as dist_util
from align3d_rt.model.aligner import Aligner
from align3d_rt.train import ddp
from align3d_rt.train.batches import batches, epoch_order, load_stage1_batch, optimizer_step, seed_everything
from align3d_rt.train.checkpoint import read_checkpoint, restore_checkpoint, rewrite_losses, save_checkpoint
from align3d_rt.train.feature_cache import CacheEntry
from align3d_rt.train.losses import stage1_loss

__all__ = ["OptimSettings", "Stage1Settings", "Stage1Result", "alignment_cosine", "new_aligner", "train_stage1",
           "aligner_state_numpy"]


@dataclass
class OptimSettings:
    """What both stages share: Adam and batching (the paper's defaults), seed and device."""

    batch_size: int = 4             # clouds per step (= batch_size * V views)
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 0
    device: str = "cpu"


@dataclass
class Stage1Settings(OptimSettings):
    epochs: int = 250
    reweight_epochs: int = 50       # semantic-consistency reweighting in the last N epochs
    reweight_lambda: float = 1.0


@dataclass
class Stage1Result:
    aligner: Aligner
    history: list[dict[str, Any]]
    cosine: dict[str, dict[str, float]] = field(default_factory=dict)  # raw / init / trained -> global, patch
    finished: bool = True


def new_aligner(dim: int, seed: int) -> Aligner:
    """Aligner with seeded initial weights (the same for a fresh and a resumed run)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Aligner(dim)


def alignment_cosine(entries: list[CacheEntry], aligner: Aligner | None, device: str = "cpu") -> dict[str, float]:
    """Mean cosine between (aligned) rendering features and RGB features over all cached views.

    aligner None = raw rendering features (no alignment). Under torchrun each rank sums its shard.
    """
    sums = {"global": 0.0, "patch": 0.0}
    views = 0
    with torch.no_grad():
        for e in dist_util.shard(entries):
            b = load_stage1_batch([e], device)
            g, p = ((b.global_render, b.patches_render) if aligner is None
                    else aligner(b.global_render, b.patches_render))
            sums["global"] += float(F.cosine_similarity(g, b.global_rgb, dim=-1).sum())
            sums["patch"] += float(F.cosine_similarity(p, b.patches_rgb, dim=-1).mean(dim=1).sum())
            views += g.shape[0]
    if dist_util.current().distributed:
        total = dist_util.sum_floats({**sums, "views": float(views)})
        views = int(total.pop("views"))
        sums = total
    return {k: v / max(views, 1) for k, v in sums.items()}


def train_stage1(entries: list[CacheEntry], dim: int, run: Path, settings: Stage1Settings, resume: bool = False,
                 stop_after: int | None = None, progress: bool = True) -> Stage1Result:
    """Train the aligner; checkpoint after every epoch. ``stop_after`` = stop once that many epochs are done.

    Under torchrun: DDP, each rank takes its slice of every global batch (train.ddp); rank 0 writes.
    """
    from tqdm import tqdm

    seed_everything(settings.seed)
    aligner = new_aligner(dim, settings.seed).to(settings.device)
    cos_raw = alignment_cosine(entries, None, settings.device)
    cos_init = alignment_cosine(entries, aligner, settings.device)
    opt = torch.optim.Adam(aligner.parameters(), lr=settings.lr, betas=settings.betas)
    start, history = 0, []
    if resume:
        ckpt = read_checkpoint(run, 1)
        if ckpt is not None:
            restore_checkpoint(ckpt, {"aligner": aligner}, opt)
            start, history = ckpt.epoch, ckpt.history
    aligner.train()
    model = ddp.wrap(aligner)
    main = dist_util.is_main()
    end = settings.epochs if stop_after is None else min(settings.epochs, stop_after)
    bar = tqdm(range(start, end), desc="stage 1", unit="epoch", disable=not (progress and main), initial=start,
               total=settings.epochs)
    for epoch in bar:
        reweight = epoch >= settings.epochs - settings.reweight_epochs
        sums: dict[str, float] = {}
        steps = 0
        for idx in batches(epoch_order(len(entries), settings.seed, epoch), settings.batch_size):
            part = ddp.rank_slice(idx)
            b = load_stage1_batch([entries[i] for i in part.indices], settings.device)
            g, p = model(b.global_render, b.patches_render)
            loss, parts = stage1_loss(g, b.global_rgb, p, b.patches_rgb, b.patches_render, reweight,
                                      settings.reweight_lambda)
            optimizer_step(opt, ddp.scaled(loss, part), ddp.global_parts(parts, part), sums)
            steps += 1
        record = {"stage": 1, "epoch": epoch + 1, "reweight": reweight,
                  **{k: v / max(steps, 1) for k, v in sums.items()}}
        history.append(record)
        bar.set_postfix(loss=f"{record.get('total', 0.0):.4f}")
        if main:
            save_checkpoint(run, 1, epoch + 1, {"aligner": aligner}, opt, history)
            rewrite_losses(run)
    aligner.eval()
    finished = end >= settings.epochs
    cos = {"raw": cos_raw, "init": cos_init, "trained": alignment_cosine(entries, aligner, settings.device)}
    return Stage1Result(aligner=aligner, history=history, cosine=cos, finished=finished)


def aligner_state_numpy(aligner: Aligner) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in aligner.state_dict().items()}
