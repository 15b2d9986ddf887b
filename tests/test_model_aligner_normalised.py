"""The aligner normalises its inputs and outputs (as the reference does) on every path that uses it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from align3d_rt.model.aligner import Aligner
from align3d_rt.model.head import branch_outputs


def test_aligner_is_scale_invariant_and_unit_length() -> None:
    torch.manual_seed(0)
    aligner = Aligner(16).eval()
    g, p = torch.randn(3, 16), torch.randn(3, 5, 16)
    ga, pa = aligner(g, p)
    ga2, pa2 = aligner(g * 7.5, p * 0.01)  # unnormalised inputs would change the MLP outputs
    torch.testing.assert_close(ga, ga2, rtol=0, atol=1e-6)
    torch.testing.assert_close(pa, pa2, rtol=0, atol=1e-6)
    torch.testing.assert_close(ga.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(pa.norm(dim=-1), torch.ones(3, 5))
    # and it is exactly normalise(MLP(normalise(x))) with the stored Linear layers
    ref = F.normalize(aligner.global_mlp(F.normalize(g, dim=-1)), dim=-1)
    torch.testing.assert_close(ga, ref, rtol=0, atol=0)


@torch.no_grad()
def test_encoder_head_uses_the_normalising_aligner() -> None:
    """The graph's head (what ONNX/OpenVINO export traces) gives the aligned branch of normalised features."""
    torch.manual_seed(1)
    aligner = Aligner(8).eval()
    g, patches = torch.randn(2, 8), torch.randn(2, 1 + 9, 8)
    text = F.normalize(torch.randn(2, 2, 8), dim=-1)
    _, probs = branch_outputs(g, patches, text, aligner)
    _, probs_scaled = branch_outputs(g * 40.0, patches * 40.0, text, aligner)
    np.testing.assert_allclose(probs.numpy(), probs_scaled.numpy(), atol=1e-6)
    ga = F.normalize(aligner.global_mlp(F.normalize(g, dim=-1)), dim=-1)
    want = ((ga @ text[1].T) / 0.07).softmax(-1)[:, 1]
    np.testing.assert_allclose(probs[:, 1].numpy(), want.numpy(), atol=1e-6)
