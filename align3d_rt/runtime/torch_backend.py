"""The torch reference backend: runs a run's EncoderGraph eagerly (CPU or CUDA)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from align3d_rt.errors import BackendUnavailable
from align3d_rt.runtime.base import BaseRunner, EncoderOutput


class TorchBackend(BaseRunner):
    """Runner over a torch EncoderGraph. ``activate`` moves it to the device; views may be host
    arrays or CUDA arrays (torch tensors, numba device arrays: shared without copies)."""

    name = "torch"

    def __init__(self, graph: Any, device: str = "cpu", batch_size: int = 9) -> None:
        super().__init__(max_batch=batch_size, device="cuda" if str(device).startswith("cuda") else "cpu")
        self.graph = graph
        self.torch_device = str(device)

    @classmethod
    def from_source(cls, run: Any, device: str = "cpu", batch_size: int = 9) -> "TorchBackend":
        """Rebuild the encoder graph of a finished run (RunArtifacts); the CLIP weights must be the ones it used."""
        from align3d_rt.model.graph import encoder_graph_from_run

        return cls(encoder_graph_from_run(run), device=device, batch_size=batch_size)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", batch_size: int = 9) -> "TorchBackend":
        from align3d_rt.artifacts.run_dir import load_run

        return cls.from_source(load_run(run_dir), device=device, batch_size=batch_size)

    @property
    def grid_size(self) -> int:
        return int(self.graph.visual.visual.grid_size[0])

    @property
    def stream(self) -> Any:
        if self.device != "cuda":
            return 0
        import torch
        from numba import cuda

        return cuda.external_stream(torch.cuda.current_stream(self.torch_device).cuda_stream)

    def _activate_impl(self) -> None:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"torch backend: device '{self.torch_device}' requested but CUDA is not available here")
        self.graph.to(self.torch_device).eval()

    def _deactivate_impl(self) -> None:
        import torch

        if self.device != "cpu":
            self.graph.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _infer_impl(self, views: Any) -> EncoderOutput:
        import numpy as np
        import torch

        if isinstance(views, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(views)).to(self.torch_device)
        elif isinstance(views, torch.Tensor) or hasattr(views, "__cuda_array_interface__"):
            x = torch.as_tensor(views, device=self.torch_device)  # no copy when already there
        else:
            x = torch.from_dlpack(views).to(self.torch_device)
        with torch.inference_mode():
            maps, probs = self.graph(x)
        return EncoderOutput(patch_maps=maps.float(), global_probs=probs.float())
