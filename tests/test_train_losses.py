"""Training losses: definitions, and the torch back-projection agreeing with the numba kernel."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from align3d_rt.train import losses as L  # noqa: E402


def test_dice_perfect_and_disjoint() -> None:
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert float(L.dice_loss(t, t)) == pytest.approx(1 - 5 / 5)
    # disjoint: 1 - 1/(2+2+1)
    assert float(L.dice_loss(1 - t, t)) == pytest.approx(1 - 1 / 5)


def test_dice_is_per_sample_mean_and_mask_excludes_padding() -> None:
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    per = [1 - 3 / 3, 1 - 1 / 2]
    assert float(L.dice_loss(p, t)) == pytest.approx(np.mean(per))
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # drops the only positive of sample 2
    assert float(L.dice_loss(p, t, mask)) == pytest.approx(np.mean([0.0, 0.0]))


def test_focal_matches_formula() -> None:
    probs = torch.tensor([[[0.9, 0.2]], [[0.1, 0.8]]]).permute(1, 0, 2)  # (B=1, C=2, 2)
    target = torch.tensor([[0, 1]])
    p_t = torch.tensor([0.9, 0.8])
    want = (-(1 - p_t) ** 2 * p_t.log()).mean()
    assert float(L.focal_loss(probs, target)) == pytest.approx(float(want), rel=1e-6)


def test_backproject_points_matches_numba_kernel() -> None:
    from align3d_rt.kernels.backproject import backproject

    rng = np.random.default_rng(0)
    b, v, g, s, n = 2, 3, 5, 17, 40
    maps = rng.random((b, v, 2, g, g), dtype=np.float32)
    pixels = rng.integers(0, s, size=(b, v, n, 2)).astype(np.int32)
    visible = rng.random((b, v, n)) > 0.4
    visible[:, :, 0] = False  # a point visible nowhere -> 0
    ref = backproject(maps, pixels, visible, image_size=s, fusion_weight=0.5)
    got = L.backproject_points(torch.from_numpy(maps), torch.from_numpy(pixels), torch.from_numpy(visible), s)
    np.testing.assert_allclose(got.numpy(), ref[..., :2], atol=1e-6)
    assert float(got[:, 0].abs().max()) == 0.0


def test_backproject_points_is_differentiable() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(1, 2, 2, 4, 4, generator=gen).requires_grad_(True)
    pixels = torch.randint(0, 12, (1, 2, 10, 2), generator=gen)
    visible = torch.ones(1, 2, 10, dtype=torch.bool)
    L.backproject_points(maps, pixels, visible, 12).sum().backward()
    assert maps.grad is not None and float(maps.grad.abs().sum()) > 0


def test_stage1_loss_reweighting() -> None:
    torch.manual_seed(0)
    g, grgb = torch.randn(3, 8), torch.randn(3, 8)
    p, prgb, praw = torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    plain, parts = L.stage1_loss(g, grgb, p, prgb)
    want = (1 - F.cosine_similarity(g, grgb, dim=-1)).mean() + (1 - F.cosine_similarity(p, prgb, dim=-1)).mean()
    assert float(plain) == pytest.approx(float(want), rel=1e-6)
    assert parts["total"] == pytest.approx(float(want), rel=1e-6)
    w = L.semantic_weights(praw, prgb, lam=0.5)
    s = (F.normalize(praw, dim=-1) @ F.normalize(prgb, dim=-1).transpose(1, 2)).mean(dim=2)
    torch.testing.assert_close(w, 1 + 0.5 * torch.sigmoid(s))
    rew, _ = L.stage1_loss(g, grgb, p, prgb, praw, reweight=True, lam=0.5)
    want_rew = ((1 - F.cosine_similarity(g, grgb, dim=-1)).mean()
                + (w * (1 - F.cosine_similarity(p, prgb, dim=-1))).mean())
    assert float(rew) == pytest.approx(float(want_rew), rel=1e-6)
    assert float(rew) > float(plain) - 1e-6  # weights >= 1


def test_branch_losses_view_and_sample_labels() -> None:
    b, v, g, s, n = 2, 3, 4, 8, 6
    probs = torch.full((b, v, 2, g, g), 0.5)
    logits = torch.zeros(b, v, 2, requires_grad=True)
    pixels = torch.zeros(b, v, n, 2, dtype=torch.long)
    visible = torch.zeros(b, v, n, dtype=torch.bool)
    visible[0, 1, 2] = True  # sample 0: anomalous point 2 visible only in view 1
    visible[:, :, 0] = True
    labels = torch.zeros(b, n)
    labels[0, 2] = 1
    out = L.branch_losses(probs, logits, pixels, visible, labels, torch.ones(b, n), torch.zeros(b, v, s, s),
                          torch.tensor([1, 0]))
    out.total().backward()
    # d/d abnormal logit: view CE (p - y)/(B*V) = +-1/12 (view (0,1) is the only positive view);
    # sample CE over each sample's OWN view mean: (p - y)/B/V = -1/12 for sample 0 (anomalous), +1/12 for 1
    want = torch.tensor([[0.0, -1 / 6, 0.0], [1 / 6, 1 / 6, 1 / 6]])
    torch.testing.assert_close(logits.grad[..., 1], want)


def test_dpca_prefers_separation() -> None:
    n_o, a_o = F.normalize(torch.tensor([1.0, 0.0]), dim=0), F.normalize(torch.tensor([0.0, 1.0]), dim=0)
    text_o = torch.stack([n_o, a_o])
    good = L.dpca_loss(text_o.clone(), text_o, 0.1)
    bad = L.dpca_loss(torch.stack([a_o, n_o]), text_o, 0.1)
    assert float(good) < float(bad)
    m = torch.stack([n_o, a_o]).clone().requires_grad_(True)
    o = text_o.clone().requires_grad_(True)
    L.dpca_loss(m, o, 0.1).backward()
    assert o.grad is None  # the other branch is detached


def test_dpca_scale_defaults_to_the_papers_value_and_says_so() -> None:
    """0.05 (paper) is the default everywhere; the run config names which published value a scale is."""
    import argparse

    from align3d_rt.cli import train as train_cli
    from align3d_rt.render.views import RenderSettings
    from align3d_rt.train.runner import TrainConfig, _build_config, dpca_scale_note
    from align3d_rt.train.stage2 import Stage2Settings

    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--dataset", "synthetic", "--root", "r", "--category", "c", "--out", "o"])
    assert args.dpca_scale == 0.05 == TrainConfig("synthetic", "r", "c", "o").dpca_scale == Stage2Settings().dpca_scale
    cfg = _build_config(TrainConfig("synthetic", "r", "c", "o"), RenderSettings(), "random:0", [])
    assert cfg["training"]["stage2"]["dpca_scale"] == 0.05
    assert cfg["training"]["stage2"]["dpca_scale_note"].startswith("0.05: the paper's value")
    assert dpca_scale_note(0.1).startswith("0.1: the reference code's default")
    assert "set by the user" in dpca_scale_note(0.2)
