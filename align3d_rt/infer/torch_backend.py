"""The torch reference backend: runs EncoderGraph eagerly (CPU or CUDA)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.errors import BackendUnavailable, RunDirError
from align3d_rt.infer.backend import EncoderOutput, Timer


def _seed_from_weights_id(weights_id: str, config: dict[str, Any]) -> int:
    """'random:SEED' names the CLIP init seed; otherwise the run's recorded init seed (default 0)."""
    if weights_id.startswith("random:"):
        try:
            return int(weights_id.split(":", 1)[1])
        except ValueError:
            pass
    clip = config.get("clip")
    seed = clip.get("init_seed", 0) if isinstance(clip, dict) else 0
    return int(seed) if isinstance(seed, int) else 0


class TorchBackend:
    """EncoderBackend over a torch EncoderGraph. ``with`` moves it to the device; ``infer`` runs it in batches."""

    name = "torch"

    def __init__(self, graph: Any, device: str = "cpu", batch_size: int = 9) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.graph = graph
        self.device = device
        self.batch_size = batch_size
        self.last_infer_seconds = 0.0
        self._active = False

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", batch_size: int = 9) -> "TorchBackend":
        """Rebuild the encoder graph of a finished training run; the CLIP weights must be the ones it used."""
        from align3d_rt.model.graph import build_encoder_graph
        from align3d_rt.train.run_dir import load_run

        run = load_run(run_dir)
        seed = _seed_from_weights_id(run.clip_weights_id, run.config)
        graph = build_encoder_graph(run.clip_name, run.clip_weights, run.aligner_state, run.text, seed=seed)
        got = graph.info.weights_id if graph.info is not None else None
        if got != run.clip_weights_id:
            raise RunDirError(
                f"{run_dir}: trained with CLIP weights {run.clip_weights_id}, but {run.clip_name} "
                f"now loads {got}; pass the original weights file"
            )
        return cls(graph, device=device, batch_size=batch_size)

    def __enter__(self) -> "TorchBackend":
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"torch backend: device '{self.device}' requested but CUDA is not available here")
        self.graph.to(self.device).eval()
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self._active and self.device != "cpu":
            self.graph.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self._active = False

    def infer(self, views: np.ndarray) -> EncoderOutput:
        """views (V,S,S,3) uint8 -> EncoderOutput (patch_maps (V,2,G,G), global_probs (V,2)) float32."""
        import torch

        if not self._active:
            self.__enter__()
        views = np.ascontiguousarray(views)
        if views.ndim == 4 and len(views) == 0:
            g = self.graph.visual.visual.grid_size[0]
            return EncoderOutput(np.zeros((0, 2, g, g), np.float32), np.zeros((0, 2), np.float32))
        maps, probs = [], []
        with Timer() as timer, torch.inference_mode():
            for i in range(0, len(views), self.batch_size):
                x = torch.from_numpy(views[i:i + self.batch_size]).to(self.device)
                m, p = self.graph(x)
                maps.append(m)
                probs.append(p)
            out = EncoderOutput(
                patch_maps=torch.cat(maps).cpu().numpy().astype(np.float32, copy=False),
                global_probs=torch.cat(probs).cpu().numpy().astype(np.float32, copy=False),
            )
        self.last_infer_seconds = timer.seconds
        return out
