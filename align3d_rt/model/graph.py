"""The exported encoder graph: uint8 views -> per-view patch probability maps and global probabilities.

EncoderGraph = frozen CLIP visual tower with DPAM + aligner + the constant text embeddings. It is what
ONNX export traces (dynamic batch) and what the torch backend runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from align3d_rt.errors import InputError, RunDirError
from align3d_rt.model.aligner import Aligner
from align3d_rt.model.dpam import DPAMVisual
from align3d_rt.model.head import branch_outputs

if TYPE_CHECKING:  # pragma: no cover
    from align3d_rt.artifacts.run_dir import RunArtifacts
    from align3d_rt.model.clip_backbone import ClipInfo


class EncoderGraph(nn.Module):
    """forward(views uint8 (B,S,S,3)) -> (patch_maps (B,2,G,G) float32, global_probs (B,2) float32)."""

    text: torch.Tensor  # buffers
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        visual: DPAMVisual,
        aligner: Aligner,
        text: torch.Tensor,
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.visual = visual
        self.aligner = aligner
        self.image_size = int(visual.visual.image_size[0])
        text = torch.as_tensor(text, dtype=torch.float32)
        if text.ndim != 3 or text.shape[:2] != (2, 2):
            raise ValueError(f"text must be (2 branches, 2 states, D), got {tuple(text.shape)}")
        self.register_buffer("text", text.clone())
        self.register_buffer("mean", torch.tensor(image_mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(image_std, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.info: ClipInfo | None = None
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.image_size
        if torch.jit.is_tracing():  # shapes are symbolic while exporting; check the example once, quietly
            ok = views.dtype == torch.uint8 and views.ndim == 4
        else:
            ok = views.dtype == torch.uint8 and views.ndim == 4 and tuple(views.shape[1:]) == (s, s, 3)
        if not ok:
            raise InputError(f"views: expected uint8 (B,{s},{s},3) images, got {views.dtype} {tuple(views.shape)}")
        x = views.permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        dtype = self.visual.visual.conv1.weight.dtype
        g, patches = self.visual(x.to(dtype))
        maps, probs = branch_outputs(g, patches, self.text.to(g.dtype), self.aligner)
        return maps.float(), probs.float()


def aligner_from_state(dim: int, state: dict[str, np.ndarray] | None, seed: int = 0) -> Aligner:
    """An Aligner with the given weights (keys of Aligner(dim).state_dict()), or seeded random init if None."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        aligner = Aligner(dim)
    if state is not None:
        try:
            aligner.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}, strict=True)
        except RuntimeError as exc:
            raise RunDirError(f"aligner weights: do not fit Aligner({dim}) ({str(exc).splitlines()[0]})") from exc
    return aligner.eval()


def build_encoder_graph(
    clip_name: str,
    clip_weights: str | None,
    aligner_state: dict[str, np.ndarray] | None,
    text: np.ndarray,
    seed: int = 0,
    dpam: bool = True,
) -> EncoderGraph:
    """Load CLIP (load_clip), wrap its visual tower with DPAM, add the aligner and the text constants."""
    from align3d_rt.model.clip_backbone import load_clip

    text = np.asarray(text, dtype=np.float32)
    model, info = load_clip(clip_name, clip_weights, seed=seed)
    if text.shape != (2, 2, info.embed_dim):
        raise RunDirError(f"text embeddings: expected (2,2,{info.embed_dim}) for {clip_name}, got {text.shape}")
    visual = DPAMVisual(model.visual, info.dpam_start, dpam=dpam)
    aligner = aligner_from_state(info.embed_dim, aligner_state, seed=seed)
    graph = EncoderGraph(visual, aligner, torch.from_numpy(text), info.image_mean, info.image_std)
    graph.info = info
    return graph


def encoder_graph_from_run(run: RunArtifacts, clip_weights: str | None = None) -> EncoderGraph:
    """The encoder graph of a finished run (the one rule: CLIP of the run, its init seed, its aligner
    and text embeddings); refuses CLIP weights other than the ones the run was trained with.

    ``clip_weights`` points at the run's weights where they are now (moved, or in another format); their
    tensors must be the ones the run recorded (``tensors-sha256:``; older runs: the file's sha256)."""
    from align3d_rt.model.weights_identity import is_file_id

    weights = clip_weights if clip_weights is not None else run.clip_weights
    if weights not in (None, "random") and not Path(weights).expanduser().is_file():
        from align3d_rt.errors import WeightsError

        raise WeightsError(f"{weights}: CLIP weights file of run {run.path} not found; pass --clip-weights PATH "
                           f"to where they are now")
    graph = build_encoder_graph(run.clip_name, weights, run.aligner_state, run.text, seed=run.clip_seed)
    info = graph.info
    got = info.weights_id if info is not None else None
    if is_file_id(run.clip_weights_id) and info is not None and info.weights_path:
        from align3d_rt.io_utils import sha256_file

        got = sha256_file(info.weights_path)  # a run made before tensor identities: compare file bytes
    if run.clip_weights_id and got != run.clip_weights_id:
        raise RunDirError(f"{run.path}: trained with CLIP weights {run.clip_weights_id}, but "
                          f"{weights or run.clip_name} "
                          f"holds {got}; pass the original weights with --clip-weights PATH")
    return graph
