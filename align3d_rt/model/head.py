"""The detector head: cosine similarity to the two state texts at a fixed temperature."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TEMPERATURE = 0.07


def state_logits(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(...,D) features vs (2,D) [normal, abnormal] text -> (...,2) cos / TEMPERATURE (both L2-normalised here)."""
    return F.normalize(features, dim=-1) @ F.normalize(text, dim=-1).transpose(0, 1) / TEMPERATURE


def abnormal_prob(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(...,D) -> (...) softmax probability of the abnormal state, computed in float32."""
    return state_logits(features, text).float().softmax(dim=-1)[..., 1]


def branch_outputs(
    g: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, aligner: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """g (B,D), patches (B,1+G*G,D), text (2 branches, 2 states, D) ->
    (patch_maps (B,2,G,G), global_probs (B,2)) abnormal probabilities; branch 0 raw, branch 1 aligner(g, P)."""
    # the token count is a fixed property of the model: read it as a plain int (no tracer warning on export)
    n_tokens = int(patches.shape[1]) if not torch.jit.is_tracing() else patches.size(1).__index__()
    grid = math.isqrt(n_tokens - 1)
    if grid * grid != n_tokens - 1:
        raise ValueError(f"patch tokens {patches.shape[1]} are not 1 + a square grid")
    ga, pa = aligner(g, patches)
    maps, probs = [], []
    for b, (gb, pb) in enumerate(((g, patches), (ga, pa))):
        maps.append(abnormal_prob(pb[:, 1:], text[b]).unflatten(1, (grid, grid)))
        probs.append(abnormal_prob(gb, text[b]))
    return torch.stack(maps, dim=1), torch.stack(probs, dim=1)
