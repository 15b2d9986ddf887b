"""The RGB-alignment MLPs: rendering features -> RGB-like features (unit-length in, unit-length out)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))


class Aligner(nn.Module):
    """Two independent Linear-GELU-Linear-GELU-Linear MLPs: `global_mlp` for g, `patch_mlp` for every token.

    As in the reference, both inputs are L2-normalised before the MLPs and both outputs are
    L2-normalised again (run format 2 / bundle format 3 onwards). Every path (stage 1, stage 2, the
    encoder graph and hence ONNX/OpenVINO export) calls this forward.

    State-dict keys: {global_mlp,patch_mlp}.{0,2,4}.{weight,bias}.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.global_mlp = _mlp(dim)
        self.patch_mlp = _mlp(dim)

    def forward(self, g: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ga = self.global_mlp(F.normalize(g, dim=-1))
        pa = self.patch_mlp(F.normalize(patches, dim=-1))
        return F.normalize(ga, dim=-1), F.normalize(pa, dim=-1)
