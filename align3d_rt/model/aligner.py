"""The RGB-alignment MLPs: rendering features -> RGB-like features."""
from __future__ import annotations

import torch
from torch import nn


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))


class Aligner(nn.Module):
    """Two independent Linear-GELU-Linear-GELU-Linear MLPs: `global_mlp` for g, `patch_mlp` for every token.

    State-dict keys: {global_mlp,patch_mlp}.{0,2,4}.{weight,bias}.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.global_mlp = _mlp(dim)
        self.patch_mlp = _mlp(dim)

    def forward(self, g: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.global_mlp(g), self.patch_mlp(patches)
