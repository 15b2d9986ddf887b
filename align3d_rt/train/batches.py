"""Deterministic epoch order and batch assembly from cached features (torch)."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from align3d_rt.train.feature_cache import CacheEntry

__all__ = ["seed_everything", "epoch_order", "batches", "Stage1Batch", "Stage2Batch", "load_stage1_batch",
           "load_stage2_batch", "collate_stage2"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Permutation of range(n) for ``epoch``; a function of (seed, epoch) only, so resumed runs match."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class Stage1Batch:
    """Views of several clouds flattened to B*V rows."""

    global_render: torch.Tensor   # (B*V,D)
    patches_render: torch.Tensor  # (B*V,T,D)
    global_rgb: torch.Tensor
    patches_rgb: torch.Tensor


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parts: dict[str, float],
                   sums: dict[str, float]) -> None:
    """One optimiser step on ``loss``; adds this step's loss parts to the epoch's running ``sums``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    for k, val in parts.items():
        sums[k] = sums.get(k, 0.0) + val


def load_stage1_batch(entries: list[CacheEntry], device: torch.device | str = "cpu") -> Stage1Batch:
    gray = [e.load(("global", "patches")) for e in entries]
    rgb = [e.load(("global", "patches"), rgb=True) for e in entries]

    def cat(items: list[dict[str, np.ndarray]], key: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([d[key] for d in items]).astype(np.float32)).to(device)

    return Stage1Batch(cat(gray, "global"), cat(gray, "patches"), cat(rgb, "global"), cat(rgb, "patches"))


@dataclass
class Stage2Batch:
    """B clouds with V views each; points padded to the largest N (point_mask 0 on padding)."""

    global_feat: torch.Tensor    # (B,V,D) float32
    patches: torch.Tensor        # (B,V,T,D) float32
    pixels: torch.Tensor         # (B,V,N,2) int64
    visible: torch.Tensor        # (B,V,N) bool
    point_labels: torch.Tensor   # (B,N) float32
    point_mask: torch.Tensor     # (B,N) float32
    gt_masks: torch.Tensor       # (B,V,S,S) float32 0/1
    labels: torch.Tensor         # (B,) int64


STAGE2_KEYS = ("global", "patches", "pixels", "visible", "point_labels", "gt_masks", "label")


def collate_stage2(records: list[dict[str, np.ndarray]], device: torch.device | str = "cpu") -> Stage2Batch:
    """Stack per-sample gray records (feature_cache layout) into a padded batch."""
    b = len(records)
    v = records[0]["pixels"].shape[0]
    n_max = max(r["pixels"].shape[1] for r in records)
    pixels = np.zeros((b, v, n_max, 2), np.int64)
    visible = np.zeros((b, v, n_max), bool)
    labels = np.zeros((b, n_max), np.float32)
    mask = np.zeros((b, n_max), np.float32)
    for i, r in enumerate(records):
        n = r["pixels"].shape[1]
        pixels[i, :, :n] = r["pixels"]
        visible[i, :, :n] = r["visible"]
        labels[i, :n] = r["point_labels"]
        mask[i, :n] = 1.0

    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    return Stage2Batch(
        global_feat=t(np.stack([r["global"] for r in records]), torch.float32),
        patches=t(np.stack([r["patches"] for r in records]), torch.float32),
        pixels=t(pixels, torch.int64),
        visible=t(visible, torch.bool),
        point_labels=t(labels, torch.float32),
        point_mask=t(mask, torch.float32),
        gt_masks=t(np.stack([r["gt_masks"] for r in records]), torch.float32),
        labels=t(np.array([int(r["label"][0]) for r in records]), torch.int64),
    )


def load_stage2_batch(entries: list[CacheEntry], device: torch.device | str = "cpu") -> Stage2Batch:
    return collate_stage2([e.load(STAGE2_KEYS) for e in entries], device)
