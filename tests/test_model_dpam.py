"""DPAM visual forward vs open_clip and vs a naive per-formula implementation; frozen CLIP stays frozen."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from align3d_rt.model.aligner import Aligner
from align3d_rt.model.clip_backbone import ClipInfo, load_clip
from align3d_rt.model.dpam import DPAMVisual
from align3d_rt.model.head import branch_outputs


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, ClipInfo]:  # (open_clip model, info)
    return load_clip("align3d-tiny")


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(2, 3, 336, 336, generator=torch.Generator().manual_seed(0))


def _naive_dpam(visual: torch.nn.Module, x: torch.Tensor, start: int) -> torch.Tensor:
    """Per-formula reference: ordinary blocks via open_clip's own modules; V-V stream written out per head."""
    x = visual._embeds(x)
    vv = None
    for i, blk in enumerate(visual.transformer.resblocks):
        if i >= start:
            vv = x.clone() if vv is None else vv
            attn = blk.attn
            y = blk.ln_1(x)
            w_v = attn.in_proj_weight[2 * attn.embed_dim:]
            b_v = attn.in_proj_bias[2 * attn.embed_dim:]
            v = y @ w_v.T + b_v  # (B,L,W)
            d = attn.embed_dim // attn.num_heads
            outs = []
            for h in range(attn.num_heads):
                vh = v[..., h * d:(h + 1) * d]
                a = torch.softmax(vh @ vh.transpose(1, 2) / math.sqrt(d), dim=-1)
                outs.append(a @ vh)
            vv = vv + attn.out_proj(torch.cat(outs, dim=-1))
        x = blk(x)  # open_clip's ordinary block (attention + MLP)
    return visual.ln_post(vv) @ visual.proj


def test_global_matches_open_clip(tiny: tuple[Any, ClipInfo], image: torch.Tensor) -> None:
    model, info = tiny
    with torch.no_grad():
        g, patches = DPAMVisual(model.visual, info.dpam_start)(image)
        want = model.encode_image(image)
    assert patches.shape == (2, 1 + 24 * 24, info.embed_dim)
    torch.testing.assert_close(g, want, atol=1e-5, rtol=1e-5)


def test_vv_stream_matches_naive_formula(tiny: tuple[Any, ClipInfo], image: torch.Tensor) -> None:
    model, info = tiny
    with torch.no_grad():
        one = image[:1]
        _, patches = DPAMVisual(model.visual, info.dpam_start)(one)
        want = _naive_dpam(model.visual, one, info.dpam_start)
        _, late = DPAMVisual(model.visual, info.dpam_start + 1)(one)
    torch.testing.assert_close(patches, want, atol=1e-5, rtol=1e-5)
    assert (late - patches).abs().max() > 1e-3  # the start block matters


def test_dpam_off_gives_ordinary_tokens(tiny: tuple[Any, ClipInfo], image: torch.Tensor) -> None:
    model, info = tiny
    with torch.no_grad():
        g, patches = DPAMVisual(model.visual, info.dpam_start, dpam=False)(image)
        x = model.visual.transformer(model.visual._embeds(image))
        want = model.visual.ln_post(x) @ model.visual.proj
        _, vv = DPAMVisual(model.visual, info.dpam_start)(image)
    torch.testing.assert_close(patches, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patches[:, 0], g, atol=1e-5, rtol=1e-5)
    assert (vv - patches).abs().max() > 1e-3


def test_frozen_clip_never_changes_in_training(tiny: tuple[Any, ClipInfo], image: torch.Tensor) -> None:
    from align3d_rt.model.prompts import PromptLearner

    model, info = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    visual = DPAMVisual(model.visual, info.dpam_start)
    aligner = Aligner(info.embed_dim)
    learners = [PromptLearner(model, deep_depth=3), PromptLearner(model, deep_depth=3)]
    params = list(aligner.parameters()) + [p for lr in learners for p in lr.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    g, patches = visual(image[:1])
    text = torch.stack([lr() for lr in learners])
    maps, probs = branch_outputs(g, patches, text, aligner)
    opt.zero_grad()
    (maps.mean() + probs.mean()).backward()
    opt.step()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in params)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
