"""Learnable text prompts (AnomalyCLIP style): object-agnostic context vectors plus deep prompts.

Prompts are "X*n_ctx object." (normal) and "X*n_ctx damaged object." (abnormal); the n_ctx placeholder
token embeddings are replaced by learnable context vectors, and in text blocks 1..deep_depth-1 the hidden
states at positions 1..deep_len are overwritten by learnable deep prompts (shared by both states).
The CLIP text tower stays frozen and is not part of the learner's parameters or state dict.

Fidelity rule (reference AnomalyCLIP, ``.half()`` on the compound prompts): the deep prompts are rounded
to fp16 before they replace hidden states, in every dtype and in training too (straight-through: the
forward uses the rounded values, the gradient passes unchanged), so learned prompts mean the same here
and in the reference. The first-layer context vectors are not rounded (the reference does not).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from align3d_rt.model.dpam import block_forward, check_block, layer_norm_fp32

STATE_TEMPLATES = ("{} object.", "{} damaged object.")


def round_fp16_straight_through(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its values rounded to fp16 (kept in ``t``'s dtype); the gradient is the identity."""
    rounded = t.detach().to(torch.float16).to(t.dtype)
    return t + (rounded - t.detach()) if t.requires_grad else rounded


class FrozenTextTower(nn.Module):
    """The pieces of an open_clip CLIP text tower the learner runs, with its own block-by-block forward."""

    attn_mask: torch.Tensor  # buffer
    blocks: Any  # open_clip's resblocks (open_clip ships no type information)
    ln_final: nn.LayerNorm

    def __init__(self, clip_model: Any) -> None:
        super().__init__()
        if getattr(clip_model, "text_pool_type", "argmax") != "argmax" or not hasattr(clip_model, "token_embedding"):
            raise TypeError("PromptLearner needs an open_clip CLIP with the standard (OpenAI-style) text tower")
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.blocks = clip_model.transformer.resblocks
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        self.context_length = int(clip_model.context_length)
        for blk in self.blocks:
            check_block(blk)

    @property
    def width(self) -> int:
        return int(self.token_embedding.weight.shape[1])

    def forward(self, x: torch.Tensor, eot: torch.Tensor, deep: torch.Tensor | None = None) -> torch.Tensor:
        """x (N,L,W) token embeddings (positions not yet added); eot (N,) EOT positions;
        deep (n_deep, deep_len, W) overwrites positions 1..deep_len at the input of blocks 1..n_deep, rounded
        to fp16 first (the reference's ``.half()``; straight-through in training).
        Returns the projected, unnormalised EOT features (N,D)."""
        x = x + self.positional_embedding.to(x.dtype)
        n_deep = 0 if deep is None else deep.shape[0]
        for i, blk in enumerate(self.blocks):
            if deep is not None and 1 <= i <= n_deep:
                d = round_fp16_straight_through(deep[i - 1]).to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, :1], d, x[:, 1 + d.shape[1]:]], dim=1)
            x = block_forward(blk, x, mask=self.attn_mask)
        x = layer_norm_fp32(self.ln_final, x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


class PromptLearner(nn.Module):
    """forward() -> (2,D) L2-normalised [normal, abnormal] text embeddings.

    Trainable parameters (= state-dict keys): 'ctx' (2, n_ctx, W) and 'deep_ctx' (n_deep, deep_len, W),
    n_deep = min(deep_depth, text layers) - 1 (a (0, deep_len, W) tensor when deep prompts are off).
    """

    tokens: torch.Tensor  # buffers
    token_embeds: torch.Tensor
    _tower: FrozenTextTower  # set with object.__setattr__: not a submodule

    def __init__(self, clip_model: Any, n_ctx: int = 12, deep_depth: int = 9, deep_len: int = 4) -> None:
        super().__init__()
        import open_clip

        tower = FrozenTextTower(clip_model)
        object.__setattr__(self, "_tower", tower)  # frozen: kept out of parameters() and state_dict()
        width = tower.width
        n_deep = max(0, min(deep_depth, len(tower.blocks)) - 1)
        self.n_ctx, self.deep_len = n_ctx, deep_len
        if 1 + max(n_ctx, deep_len) >= tower.context_length:
            raise ValueError("prompt longer than the text context")

        placeholder = " ".join(["X"] * n_ctx)
        tokens = open_clip.tokenize([t.format(placeholder) for t in STATE_TEMPLATES],
                                    context_length=tower.context_length)
        with torch.no_grad():
            embeds = tower.token_embedding(tokens)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("token_embeds", embeds, persistent=False)
        self.ctx = nn.Parameter(torch.empty(2, n_ctx, width).normal_(0.0, 0.02))
        self.deep_ctx = nn.Parameter(torch.empty(n_deep, deep_len, width).normal_(0.0, 0.02))

    @property
    def text_tower(self) -> FrozenTextTower:
        return self._tower

    def _apply(self, fn: Any, recurse: bool = True) -> PromptLearner:  # .to()/.cuda()/.half() move the tower too
        super()._apply(fn, recurse)
        self._tower._apply(fn, recurse)
        return self

    def prompt_embeddings(self) -> torch.Tensor:
        """(2,L,W) token embeddings with the context vectors in positions 1..n_ctx."""
        e = self.token_embeds
        return torch.cat([e[:, :1], self.ctx.to(e.dtype), e[:, 1 + self.n_ctx:]], dim=1)

    def forward(self) -> torch.Tensor:
        deep = self.deep_ctx if self.deep_ctx.shape[0] > 0 else None
        feats = self._tower(self.prompt_embeddings(), self.tokens.argmax(dim=-1), deep)
        return F.normalize(feats.float(), dim=-1)
