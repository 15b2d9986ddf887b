"""Stage 2: modality-aware prompt learning with the aligner frozen.

Two independent PromptLearners: branch 0 (rendering) scores raw CLIP features, branch 1 (RGB-aligned)
scores the aligner's outputs. Per branch: 3D Dice pair, 2D Focal + Dice pair, per-view CE, per-sample
CE of the sample's own view-averaged logits; DpCA contrast in the last epochs.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from align3d_rt import distributed as dist_util
from align3d_rt.model.head import state_logits
from align3d_rt.train import ddp
from align3d_rt.train.batches import (
    Stage2Batch,
    batches,
    epoch_order,
    load_stage2_batch,
    optimizer_step,
    seed_everything,
)
from align3d_rt.train.checkpoint import read_checkpoint, restore_checkpoint, rewrite_losses, save_checkpoint
from align3d_rt.train.feature_cache import CacheEntry
from align3d_rt.train.losses import BranchLosses, branch_losses, dpca_loss
from align3d_rt.train.stage1 import OptimSettings

__all__ = ["Stage2Settings", "Stage2Result", "new_prompt_learners", "stage2_step_losses", "train_stage2",
           "run_stage2_epoch", "make_optimizer", "final_text", "LOSS_NAMES", "PromptPair"]

LOSS_NAMES = ("seg3d", "seg2d", "cls_view", "cls_sample")
BRANCHES = ("render", "aligned")


@dataclass
class Stage2Settings(OptimSettings):
    epochs: int = 15
    dpca_epochs: int = 5       # DpCA contrast in the last N epochs
    dpca_scale: float = 0.05      # paper's value; the reference code uses 0.1


@dataclass
class Stage2Result:
    prompts: dict[str, torch.nn.Module]   # 'render', 'aligned'
    history: list[dict[str, Any]]
    text: np.ndarray                      # (2,2,D) float32 [branch, state, D]
    finished: bool = True


def new_prompt_learners(clip_model: Any, seed: int) -> dict[str, torch.nn.Module]:
    """The two prompt learners with seeded initial context (identical for fresh and resumed runs)."""
    from align3d_rt.model.prompts import PromptLearner

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {"render": PromptLearner(clip_model), "aligned": PromptLearner(clip_model)}


def _branch_forward(g: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, b: int, v: int,
                    batch: Stage2Batch) -> BranchLosses:
    """g (B*V,D), patches (B*V,T,D), text (2,D) -> the branch's four losses."""
    grid = math.isqrt(patches.shape[1] - 1)
    probs = state_logits(patches[:, 1:], text).softmax(dim=-1)              # (BV,GG,2)
    maps = probs.transpose(1, 2).reshape(b, v, 2, grid, grid)
    global_logits = state_logits(g, text).reshape(b, v, 2)
    return branch_losses(maps, global_logits, batch.pixels, batch.visible, batch.point_labels,
                         batch.point_mask, batch.gt_masks, batch.labels)


class PromptPair(torch.nn.Module):
    """Both prompt learners as one module (what DDP wraps): forward() -> {branch: (2,D) text}."""

    def __init__(self, prompts: dict[str, torch.nn.Module]) -> None:
        super().__init__()
        self.branches = torch.nn.ModuleDict({name: prompts[name] for name in BRANCHES})

    def forward(self) -> dict[str, torch.Tensor]:
        return {name: self.branches[name]() for name in BRANCHES}


Prompts = dict[str, torch.nn.Module] | torch.nn.Module   # the learners, or a (DDP-wrapped) PromptPair


def _texts(prompts: Prompts) -> dict[str, torch.Tensor]:
    if isinstance(prompts, dict):
        return {name: prompts[name]() for name in BRANCHES}
    return prompts()


def stage2_step_losses(batch: Stage2Batch, aligner: torch.nn.Module, prompts: Prompts,
                       dpca: bool, dpca_scale: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of one batch and its parts as floats (per branch, summed over branches, dpca, total)."""
    b, v = batch.global_feat.shape[:2]
    g = batch.global_feat.reshape(b * v, -1)
    p = batch.patches.reshape(b * v, batch.patches.shape[2], -1)
    with torch.no_grad():
        ga, pa = aligner(g, p)
    texts = _texts(prompts)
    feats = {"render": (g, p), "aligned": (ga, pa)}
    total = g.new_zeros((), dtype=torch.float32)
    parts: dict[str, float] = {}
    for name in BRANCHES:
        losses = _branch_forward(*feats[name], texts[name], b, v, batch)
        total = total + losses.total()
        parts.update(losses.as_floats(name))
    for k in LOSS_NAMES:
        parts[k] = sum(parts[f"{br}_{k}"] for br in BRANCHES)
    if dpca:
        contrast = dpca_loss(texts["render"], texts["aligned"], dpca_scale) + \
            dpca_loss(texts["aligned"], texts["render"], dpca_scale)
        total = total + contrast
        parts["dpca"] = float(contrast.detach())
    parts["total"] = float(total.detach())
    return total, parts


def run_stage2_epoch(epoch: int, n: int, load_batch: Callable[[list[int]], Stage2Batch], aligner: torch.nn.Module,
                     prompts: Prompts, optimizer: torch.optim.Optimizer,
                     settings: Stage2Settings, bar: Any = None) -> dict[str, Any]:
    """One epoch over n samples in the (seed, epoch) order; returns the epoch's mean losses.

    Under torchrun each rank loads only its slice of every global batch (train.ddp)."""
    dpca = epoch >= settings.epochs - settings.dpca_epochs
    sums: dict[str, float] = {}
    steps = 0
    for idx in batches(epoch_order(n, settings.seed, epoch), settings.batch_size):
        part = ddp.rank_slice(idx)
        batch = load_batch(part.indices)
        loss, parts = stage2_step_losses(batch, aligner, prompts, dpca, settings.dpca_scale)
        optimizer_step(optimizer, ddp.scaled(loss, part), ddp.global_parts(parts, part), sums)
        steps += 1
        dist_util.fail_point("stage2")  # test hook: a rank that dies between two DDP steps
        if bar is not None:
            bar.set_postfix(loss=f"{sums['total'] / steps:.4f}", step=steps)
    return {"stage": 2, "epoch": epoch + 1, "dpca_on": dpca, **{k: val / max(steps, 1) for k, val in sums.items()}}


def make_optimizer(prompts: dict[str, torch.nn.Module], settings: Stage2Settings) -> torch.optim.Optimizer:
    params = [p for name in BRANCHES for p in prompts[name].parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=settings.lr, betas=settings.betas)


def final_text(prompts: dict[str, torch.nn.Module]) -> np.ndarray:
    """(2,2,D) float32 text embeddings [branch, state, D] from the final prompt learners."""
    with torch.no_grad():
        return torch.stack([prompts[name]().float() for name in BRANCHES]).cpu().numpy().astype(np.float32)


def train_stage2(entries: list[CacheEntry], clip_model: Any, aligner: torch.nn.Module, run: Path,
                 settings: Stage2Settings, resume: bool = False, stop_after: int | None = None,
                 progress: bool = True) -> Stage2Result:
    """Train both prompt learners; checkpoint after every epoch; ``stop_after`` = stop after that many epochs."""
    from tqdm import tqdm

    seed_everything(settings.seed)
    aligner.eval()
    for prm in aligner.parameters():
        prm.requires_grad_(False)
    aligner.to(settings.device)
    prompts = {k: m.to(settings.device) for k, m in new_prompt_learners(clip_model, settings.seed).items()}
    optimizer = make_optimizer(prompts, settings)
    start, history = 0, []
    if resume:
        ckpt = read_checkpoint(run, 2)
        if ckpt is not None:
            restore_checkpoint(ckpt, prompts, optimizer)
            start, history = ckpt.epoch, ckpt.history
    for module in prompts.values():
        module.train()
    main = dist_util.is_main()
    learners: Prompts = ddp.wrap(PromptPair(prompts)) if dist_util.current().distributed else prompts
    end = settings.epochs if stop_after is None else min(settings.epochs, stop_after)
    bar = tqdm(range(start, end), desc="stage 2", unit="epoch", disable=not (progress and main), initial=start,
               total=settings.epochs)
    for epoch in bar:
        record = run_stage2_epoch(epoch, len(entries),
                                  lambda idx: load_stage2_batch([entries[i] for i in idx], settings.device),
                                  aligner, learners, optimizer, settings, bar)
        history.append(record)
        if main:
            save_checkpoint(run, 2, epoch + 1, prompts, optimizer, history)
            rewrite_losses(run)
    for module in prompts.values():
        module.eval()
    return Stage2Result(prompts=prompts, history=history, text=final_text(prompts), finished=end >= settings.epochs)
