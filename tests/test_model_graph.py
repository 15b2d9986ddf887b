"""EncoderGraph: uint8 views -> probability maps; ONNX export parity with onnxruntime."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from align3d_rt.errors import InputError, RunDirError
from align3d_rt.model.aligner import Aligner
from align3d_rt.model.graph import EncoderGraph, build_encoder_graph
from align3d_rt.model.head import TEMPERATURE

D = 128


@pytest.fixture(scope="module")
def text() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 2, D)).astype(np.float32)


@pytest.fixture(scope="module")
def graph(text: np.ndarray) -> EncoderGraph:
    return build_encoder_graph("align3d-tiny", None, None, text)


@pytest.fixture(scope="module")
def views() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 336, 336, 3), dtype=np.uint8))


def test_outputs_shapes_and_manual_head(graph: EncoderGraph, views: torch.Tensor, text: np.ndarray) -> None:
    with torch.inference_mode():
        maps, probs = graph(views)
        x = views.permute(0, 3, 1, 2).float() / 255
        mean = torch.tensor(graph.info.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(graph.info.image_std).view(1, 3, 1, 1)
        g, patches = graph.visual((x - mean) / std)
        ga, pa = graph.aligner(g, patches)
    assert maps.shape == (3, 2, 24, 24) and probs.shape == (3, 2)
    assert maps.dtype == torch.float32 and probs.dtype == torch.float32
    t = torch.from_numpy(text)
    for b, (gb, pb) in enumerate(((g, patches), (ga, pa))):
        tn = t[b] / t[b].norm(dim=-1, keepdim=True)
        pn = pb[:, 1:] / pb[:, 1:].norm(dim=-1, keepdim=True)
        want_map = torch.softmax(pn @ tn.T / TEMPERATURE, dim=-1)[..., 1].reshape(3, 24, 24)
        gn = gb / gb.norm(dim=-1, keepdim=True)
        want_prob = torch.softmax(gn @ tn.T / TEMPERATURE, dim=-1)[:, 1]
        torch.testing.assert_close(maps[:, b], want_map, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(probs[:, b], want_prob, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(maps[:, 0], maps[:, 1])  # the aligner changes branch 1


def test_bad_views_rejected(graph: EncoderGraph) -> None:
    with pytest.raises(InputError, match=r"views: expected uint8 \(B,336,336,3\)"):
        graph(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))
    with pytest.raises(InputError, match="views: expected uint8"):
        graph(torch.zeros(1, 336, 336, 3, dtype=torch.float32))


def test_aligner_state_and_text_checks(text: np.ndarray) -> None:
    torch.manual_seed(3)
    aligner = Aligner(D)
    state = {k: v.numpy() for k, v in aligner.state_dict().items()}
    assert sorted(state) == sorted(
        f"{m}.{i}.{p}" for m in ("global_mlp", "patch_mlp") for i in (0, 2, 4) for p in ("weight", "bias")
    )
    g = build_encoder_graph("align3d-tiny", None, state, text)
    torch.testing.assert_close(g.aligner.patch_mlp[4].weight, aligner.patch_mlp[4].weight)
    assert torch.equal(g.text, torch.from_numpy(text))
    with pytest.raises(RunDirError, match="text embeddings"):
        build_encoder_graph("align3d-tiny", None, None, text[:, :, :64])
    with pytest.raises(RunDirError, match="aligner weights"):
        build_encoder_graph("align3d-tiny", None, {"global_mlp.0.weight": np.zeros((2, 2), np.float32)}, text)


def test_onnx_export_dynamic_batch_matches_onnxruntime(graph: EncoderGraph, views: torch.Tensor) -> None:
    ort = pytest.importorskip("onnxruntime")
    buf = io.BytesIO()
    torch.onnx.export(
        graph, (views[:2],), buf, dynamo=False, opset_version=17,
        input_names=["views"], output_names=["patch_maps", "global_probs"],
        dynamic_axes={"views": {0: "batch"}, "patch_maps": {0: "batch"}, "global_probs": {0: "batch"}},
    )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        with torch.inference_mode():
            want = graph(views[:n])
        got = sess.run(None, {"views": views[:n].numpy()})
        for g, w in zip(got, want, strict=True):
            assert g.shape == tuple(w.shape)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)
