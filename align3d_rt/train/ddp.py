"""DistributedDataParallel steps: each rank takes its slice of every global batch, losses weighted so that
DDP's gradient average equals the gradient of the single-process global-batch loss.

Every stage loss is a mean of per-sample (or per-view, per-pixel: a fixed number per sample) terms plus
terms that do not depend on the batch (DpCA). With ``b_r`` of the global batch's ``B`` samples on rank r,
rank r backpropagates ``loss_r * b_r * W / B``; DDP sums the W gradients and divides by W, which gives
``sum_r (b_r / B) * grad(loss_r)`` = the gradient of the global-batch mean, also for unequal shards and the
last partial batch. A rank whose slice is empty (a global batch smaller than the world) runs one sample with
weight 0, so every rank joins every gradient all-reduce. In a plain run nothing here changes anything.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from align3d_rt import distributed as dist_util

__all__ = ["RankSlice", "rank_slice", "wrap", "scaled", "global_parts"]


class RankSlice:
    """This rank's sample indices of one global batch and its share ``b_r / B`` of the batch."""

    def __init__(self, indices: list[int], share: float) -> None:
        self.indices = indices
        self.share = share


def rank_slice(global_batch: np.ndarray | list[int]) -> RankSlice:
    """``global_batch[rank::world]`` (every sample's views stay together: a sample is one index)."""
    info = dist_util.current()
    idx = [int(i) for i in global_batch]
    if not info.distributed:
        return RankSlice(idx, 1.0)
    mine = dist_util.shard(idx, info)
    if not mine:
        return RankSlice(idx[:1], 0.0)
    return RankSlice(mine, len(mine) / len(idx))


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` under torchrun; the module itself in a plain run."""
    info = dist_util.current()
    if not info.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = info.device or ""
    on_gpu = device.startswith("cuda")
    # the only buffers (prompt tokens) are constants: synced once at construction, not before every forward
    return DistributedDataParallel(module, device_ids=[torch.device(device)] if on_gpu else None,
                                   forward_sync_buffers=False)


def scaled(loss: torch.Tensor, part: RankSlice) -> torch.Tensor:
    """The loss this rank backpropagates (see the module docstring); unchanged in a plain run."""
    info = dist_util.current()
    if not info.distributed:
        return loss
    return loss * (part.share * info.world_size)


def global_parts(parts: dict[str, float], part: RankSlice) -> dict[str, float]:
    """The global batch's loss parts (share-weighted sum over ranks); unchanged in a plain run."""
    if not dist_util.current().distributed:
        return parts
    return dist_util.sum_floats({k: v * part.share for k, v in parts.items()})


def unwrap(module: Any) -> Any:
    """The module inside a DDP wrapper (or the module itself)."""
    return getattr(module, "module", module)
