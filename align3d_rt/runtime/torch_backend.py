"""The torch reference backend: runs a run's EncoderGraph eagerly (CPU or CUDA).

Options: ``precision_hint`` 'f32' (default, the reference; 'auto' is the same) or 'bf16' / 'f16' (the
graph runs under ``torch.autocast`` in that dtype; outputs are float32 again); ``compile=True`` wraps
the graph in ``torch.compile`` (compiled on the first call, so a warm-up pays for it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from align3d_rt.errors import BackendUnavailable
from align3d_rt.runtime import registry
from align3d_rt.runtime.base import BaseRunner, EncoderOutput
from align3d_rt.vocabulary import PrecisionHint

# precision hint -> torch.autocast dtype (None: no autocast, the fp32 reference)
AUTOCAST_DTYPES: dict[str, str | None] = {PrecisionHint.F32: None, PrecisionHint.AUTO: None,
                                          PrecisionHint.BF16: "bfloat16", PrecisionHint.F16: "float16"}


class TorchBackend(BaseRunner):
    """Runner over a torch EncoderGraph. ``activate`` moves it to the device; views may be host
    arrays or CUDA arrays (torch tensors, numba device arrays: shared without copies)."""

    name = "torch"

    def __init__(self, graph: Any, device: str = "cpu", batch_size: int = 9, precision_hint: str | None = None,
                 compile: bool = False) -> None:
        super().__init__(max_batch=batch_size, device="cuda" if str(device).startswith("cuda") else "cpu")
        self.graph = graph
        self.torch_device = str(device)
        self.precision_hint = registry.parse_option(self.name, "precision_hint", precision_hint or PrecisionHint.F32)
        self.compile = bool(compile)
        self._module: Any = graph

    @classmethod
    def from_source(cls, run: Any, device: str = "cpu", batch_size: int = 9, precision_hint: str | None = None,
                    compile: bool = False) -> TorchBackend:
        """Rebuild the encoder graph of a finished run (RunArtifacts); the CLIP weights must be the ones it used."""
        from align3d_rt.model.graph import encoder_graph_from_run

        return cls(encoder_graph_from_run(run), device=device, batch_size=batch_size, precision_hint=precision_hint,
                   compile=compile)

    @property
    def detector_info(self) -> dict[str, Any]:
        """What the Detector records about this runner: the compute precision and whether it is compiled."""
        return {"compute_precision": self.precision_hint, "torch_compile": self.compile}

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", batch_size: int = 9) -> TorchBackend:
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
            raise BackendUnavailable(f"torch backend: device '{self.torch_device}' requested "
                                     "but CUDA is not available here")
        self.graph.to(self.torch_device).eval()
        self._module = torch.compile(self.graph) if self.compile else self.graph

    def _deactivate_impl(self) -> None:
        import torch

        self._module = self.graph
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
        dtype = AUTOCAST_DTYPES[self.precision_hint]
        with torch.inference_mode(), torch.autocast(self.device, dtype=getattr(torch, dtype or "float32"),
                                                    enabled=dtype is not None):
            maps, probs = self._module(x)
        return EncoderOutput(patch_maps=maps.float(), global_probs=probs.float())
