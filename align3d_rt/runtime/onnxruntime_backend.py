"""ONNX Runtime encoder backend (torch-free): runs a bundle's encoder.onnx.

Provider choice: CPU always works. When onnxruntime-gpu reports CUDA (and its CUDA libraries load,
see ``onnxruntime.preload_dlls``), CUDA is used; the TensorRT execution provider only when asked
for. If a requested GPU provider cannot be used, the session falls back to CPU with one warning line.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import INPUT_NAME, OUTPUT_NAMES, Bundle
from align3d_rt.loaders import OrtSessionLoader, resolve_providers
from align3d_rt.runtime import arrays
from align3d_rt.runtime.base import BundleRunner, EncoderOutput, check_graph_input

__all__ = ["OrtBackend", "check_graph_input", "resolve_providers"]


class OrtBackend(BundleRunner):
    """Runner over ONNX Runtime (host buffers). ``with OrtBackend(bundle) as b: out = b.infer(views)``."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle | str | os.PathLike[str], providers: Sequence[str] | None = None,
                 threads: int | None = None, max_batch: int | None = None) -> None:
        super().__init__(bundle, max_batch=max_batch, device="cpu")
        self.requested_providers = list(providers) if providers is not None else None
        self.threads = threads
        self.load_session = OrtSessionLoader(self.bundle.onnx_path, self.bundle.precision, threads,
                                             tuple(providers) if providers is not None else None)
        self.providers: list[str] = []
        self._session: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        session = self.load_session()
        check_graph_input(self.bundle, session.get_inputs()[0].shape)
        self.providers = list(session.get_providers())
        self._session = session

    def _deactivate_impl(self) -> None:
        self._session = None
        self.providers = []

    # -- inference ---------------------------------------------------------------------------------
    def _infer_impl(self, views: Any) -> EncoderOutput:
        """One chunk of (V,S,S,3) uint8 views -> float32 maps and probabilities (host)."""
        host = np.ascontiguousarray(arrays.to_host(views))
        maps, probs = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: host})
        return EncoderOutput(patch_maps=np.asarray(maps, np.float32), global_probs=np.asarray(probs, np.float32))
