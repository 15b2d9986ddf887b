"""CLIP visual tower with DPAM (V-V attention) written over open_clip's block weights.

The forward is spelled out with explicit matmuls (no nn.MultiheadAttention fast path) so that it traces
cleanly to ONNX, and LayerNorm/softmax are computed in float32 whatever the model dtype (FP16 export).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def layer_norm_fp32(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """Apply a LayerNorm module with float32 statistics, returning the input dtype."""
    w = ln.weight.float() if ln.weight is not None else None
    b = ln.bias.float() if ln.bias is not None else None
    return F.layer_norm(x.float(), ln.normalized_shape, w, b, ln.eps).to(x.dtype)


def _heads(t: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """(B,L,H*d) -> (B,H,L,d)."""
    return t.unflatten(-1, (n_heads, head_dim)).transpose(1, 2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    """(B,H,L,d) -> (B,L,H*d)."""
    return t.transpose(1, 2).flatten(2)


def _softmax_attend(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor, scale: float,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(a b^T * scale + mask) v per head. Eager runs use the fused SDPA kernel; ONNX export and
    tracing get explicit MatMul/Softmax with float32 softmax (what an FP16/strongly-typed graph needs)."""
    if not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()) and a.dtype == torch.float32:
        return F.scaled_dot_product_attention(a, b, v, attn_mask=mask, scale=scale)
    logits = (a @ b.transpose(-1, -2)).float()
    if scale != 1.0:
        logits = logits * scale
    if mask is not None:
        logits = logits + mask.float()
    return logits.softmax(dim=-1).to(v.dtype) @ v


def check_block(block: nn.Module) -> None:
    """Only the standard open_clip ResidualAttentionBlock (self-attention via nn.MultiheadAttention) is supported."""
    attn = getattr(block, "attn", None)
    ok = isinstance(attn, nn.MultiheadAttention) and attn.in_proj_weight is not None and attn.batch_first
    if not ok or hasattr(block, "ln_1_kv"):
        raise TypeError(f"unsupported CLIP block type {type(block).__name__}: need open_clip's ResidualAttentionBlock")


def block_qkv(block: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v per head (B,H,L,d) from ln_1(x) with the block's in-projection."""
    attn: nn.MultiheadAttention = block.attn
    y = layer_norm_fp32(block.ln_1, x)
    # three projections instead of one and a split: the same dot products, and the exported graph has no
    # split along the channel axis (OpenVINO's CPU plugin ran that split as a reference kernel, ~3% of ViT-L)
    w, b = attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)
    q, k, v = (F.linear(y, w[i], b[i]) for i in range(3))
    h, d = attn.num_heads, attn.head_dim
    return _heads(q, h, d), _heads(k, h, d), _heads(v, h, d)


def visual_qkv(block: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q, k, v) per head (B,H,L,d) and the V-V query (B,H,L,d), both queries already multiplied by the
    attention scale 1/sqrt(d): q through the scaled weights, the V-V query as v * scale before the head
    split. The exported graph then has no scale multiply between the transposes and the fused attention
    (which OpenVINO's CPU plugin could not absorb); for d = 64 (ViT-L) the scale is 1/8, exact in floats."""
    attn: nn.MultiheadAttention = block.attn
    y = layer_norm_fp32(block.ln_1, x)
    h, d = attn.num_heads, attn.head_dim
    scale = 1.0 / math.sqrt(d)
    w, b = attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)
    q = F.linear(y, w[0] * scale, b[0] * scale)
    k, v = F.linear(y, w[1], b[1]), F.linear(y, w[2], b[2])
    return _heads(q, h, d), _heads(k, h, d), _heads(v, h, d), _heads(v * scale, h, d)


def out_proj(block: Any, t: torch.Tensor) -> torch.Tensor:
    """Merge heads and apply the attention output projection and the block's layer scale."""
    attn: nn.MultiheadAttention = block.attn
    return block.ls_1(F.linear(_merge(t), attn.out_proj.weight, attn.out_proj.bias))


def block_mlp(block: Any, x: torch.Tensor) -> torch.Tensor:
    return block.ls_2(block.mlp(layer_norm_fp32(block.ln_2, x)))


def block_forward(block: Any, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One ordinary pre-LN transformer block: x + attn(ln_1 x), then + mlp(ln_2 x)."""
    q, k, v = block_qkv(block, x)
    scale = 1.0 / math.sqrt(block.attn.head_dim)
    x = x + out_proj(block, _softmax_attend(q, k, v, scale, mask))
    return x + block_mlp(block, x)


class DPAMVisual(nn.Module):
    """forward(x (B,3,S,S) normalised) -> (global (B,D), patches (B,1+G*G,D)), projected, not normalised.

    Blocks >= dpam_start also run a V-V stream: it starts as the ordinary stream entering the first DPAM
    block and adds out_proj(softmax(V V^T / sqrt(d)) V) per block (V from ln_1 of the ordinary stream's
    input), without the MLP. Patch tokens come from the V-V stream (or the ordinary one when dpam=False);
    the global feature is the ordinary CLIP image embedding.
    """

    visual: Any  # open_clip's VisionTransformer (open_clip ships no type information)

    def __init__(self, visual: Any, dpam_start: int, dpam: bool = True) -> None:
        super().__init__()
        blocks = list(visual.transformer.resblocks)
        if not 0 <= dpam_start < len(blocks):
            raise ValueError(f"dpam_start {dpam_start} outside 0..{len(blocks) - 1}")
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise TypeError("DPAMVisual needs a class-token CLIP ViT (pool_type 'tok', no attentional pooling)")
        if getattr(visual, "final_ln_after_pool", False) or visual.proj is None:
            raise TypeError("DPAMVisual needs ln_post on all tokens and a projection matrix")
        for blk in blocks:
            check_block(blk)
        self.visual = visual
        self.dpam_start = dpam_start
        self.dpam = dpam

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patchify, prepend CLS, add positions, ln_pre: (B,3,S,S) -> (B,1+G*G,W)."""
        v = self.visual
        x = v.conv1(x.to(v.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return x if isinstance(v.ln_pre, nn.Identity) else layer_norm_fp32(v.ln_pre, x)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        return layer_norm_fp32(self.visual.ln_post, tokens) @ self.visual.proj

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(x)
        vv: torch.Tensor | None = None
        blocks = list(self.visual.transformer.resblocks)
        for i, blk in enumerate(blocks):
            q, k, v, v_query = visual_qkv(blk, x)  # queries carry the attention scale
            if self.dpam and i >= self.dpam_start:
                vv = x if vv is None else vv
                vv = vv + out_proj(blk, _softmax_attend(v_query, v, v, 1.0))
            if vv is not None and i == len(blocks) - 1:
                # patches come from the V-V stream: after the last block only the class token of the
                # ordinary stream is read, and attention rows and the MLP are per token, so the rest is
                # not computed (about 3% of ViT-L's work; the same numbers up to float summation order)
                x, q = x[:, :1], q[:, :, :1]
            x = x + out_proj(blk, _softmax_attend(q, k, v, 1.0))
            x = x + block_mlp(blk, x)
        global_feat = self.project(x[:, 0])
        patches = self.project(vv if vv is not None else x)
        return global_feat, patches
