"""Prompt learner: trainable parts, output, and agreement with open_clip's text encoder."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from align3d_rt.model.aligner import Aligner
from align3d_rt.model.clip_backbone import ClipInfo, load_clip
from align3d_rt.model.head import TEMPERATURE, state_logits
from align3d_rt.model.prompts import PromptLearner

WORDS = "a photo of the big small red blue clean shiny metal part"


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, ClipInfo]:  # (open_clip model, info)
    return load_clip("align3d-tiny")


def _word_ctx(model: Any, n_ctx: int = 12) -> torch.Tensor:
    import open_clip

    tok = open_clip.tokenize([WORDS])[0]
    assert int(tok.argmax()) == n_ctx + 1  # each word is one token
    return model.token_embedding(tok[1:1 + n_ctx])


def test_state_dict_shapes_and_output(tiny: tuple[Any, ClipInfo]) -> None:
    model, info = tiny
    learner = PromptLearner(model)
    assert sorted(learner.state_dict()) == ["ctx", "deep_ctx"]
    assert learner.ctx.shape == (2, 12, 128) and learner.deep_ctx.shape == (8, 4, 128)
    assert [n for n, _ in learner.named_parameters()] == ["ctx", "deep_ctx"]
    assert abs(float(learner.ctx.detach().std()) - 0.02) < 0.005
    out = learner()
    assert out.shape == (2, info.embed_dim)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(out[0], out[1])


def test_deep_depth_is_clamped_to_text_layers(tiny: tuple[Any, ClipInfo]) -> None:
    model, _ = tiny
    n_layers = len(model.transformer.resblocks)
    assert PromptLearner(model, deep_depth=100).deep_ctx.shape[0] == n_layers - 1
    assert PromptLearner(model, deep_depth=1).deep_ctx.shape[0] == 0


def test_gradients_reach_only_the_prompts(tiny: tuple[Any, ClipInfo]) -> None:
    model, _ = tiny
    learner = PromptLearner(model)
    feats = torch.randn(5, 128, generator=torch.Generator().manual_seed(0))
    loss = state_logits(feats, learner()).logsumexp(-1).mean()
    loss.backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert learner.deep_ctx.grad is not None and learner.deep_ctx.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


def test_equals_encode_text_with_word_context(tiny: tuple[Any, ClipInfo]) -> None:
    import open_clip

    model, _ = tiny
    learner = PromptLearner(model, deep_depth=1)
    with torch.no_grad():
        learner.ctx.copy_(_word_ctx(model).expand(2, -1, -1))
        got = learner()
        want = model.encode_text(open_clip.tokenize([f"{WORDS} object.", f"{WORDS} damaged object."]), normalize=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_deep_prompts_overwrite_blocks_1_to_n(tiny: tuple[Any, ClipInfo]) -> None:
    """Deep prompts equal to the hidden states that are already there leave the output unchanged."""
    import open_clip

    model, _ = tiny
    tokens = open_clip.tokenize([f"{WORDS} object."])
    with torch.no_grad():
        x = model.token_embedding(tokens) + model.positional_embedding
        inputs = []
        for blk in model.transformer.resblocks:
            inputs.append(x)
            x = blk(x, attn_mask=model.attn_mask)
        learner = PromptLearner(model, deep_depth=4)
        learner.ctx.copy_(_word_ctx(model).expand(2, -1, -1))
        learner.deep_ctx.copy_(torch.stack([inputs[i][0, 1:5] for i in (1, 2, 3)]))
        same = learner()
        plain = PromptLearner(model, deep_depth=1)
        plain.ctx.copy_(learner.ctx)
        torch.testing.assert_close(same, plain(), atol=1e-5, rtol=1e-5)
        learner.deep_ctx[2].zero_()  # block 3 input now differs
        assert (learner() - same).abs().max() > 1e-4


def test_head_temperature() -> None:
    text = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logits = state_logits(torch.tensor([[3.0, 0.0]]), text)
    torch.testing.assert_close(logits, torch.tensor([[1 / TEMPERATURE, 0.0]]))
    assert Aligner(4)(torch.zeros(1, 4), torch.zeros(1, 3, 4))[1].shape == (1, 3, 4)


def test_deep_prompts_enter_rounded_to_fp16_with_a_straight_through_gradient(tiny: tuple[Any, ClipInfo]) -> None:
    """Fidelity rule (reference `.half()` on the compound prompts): the forward sees fp16-rounded deep prompts;
    the gradient passes unchanged, so training still moves them by sub-fp16 steps."""
    from align3d_rt.model.prompts import round_fp16_straight_through

    gen = torch.Generator().manual_seed(0)
    t = (torch.randn(4, 8, generator=gen) * 0.3).requires_grad_(True)
    out = round_fp16_straight_through(t)
    assert torch.equal(out, t.detach().half().float()) and not torch.equal(out, t.detach())
    weights = torch.randn(4, 8, generator=gen)
    (out * weights).sum().backward()
    assert torch.equal(t.grad, weights)
    assert torch.equal(round_fp16_straight_through(t.detach()), t.detach().half().float())

    model, _ = tiny
    learner = PromptLearner(model)
    with torch.no_grad():
        learner.deep_ctx.copy_(torch.randn(learner.deep_ctx.shape, generator=gen) * 0.5)
        got = learner()
        learner.deep_ctx.copy_(learner.deep_ctx.half().float())  # already fp16 values: the same text
        assert torch.equal(learner(), got)
