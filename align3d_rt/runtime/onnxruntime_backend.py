"""ONNX Runtime encoder backend (torch-free): runs a bundle's encoder.onnx.

Provider choice: CPU always works. When onnxruntime-gpu reports CUDA (and its CUDA libraries load,
see ``onnxruntime.preload_dlls``), CUDA is used; the TensorRT execution provider only when asked
for. If a requested GPU provider cannot be used, the session falls back to CPU with one warning line.
"""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import INPUT_NAME, OUTPUT_NAMES, Bundle, load_bundle
from align3d_rt.errors import BundleError, import_backend
from align3d_rt.runtime import arrays
from align3d_rt.runtime.base import BaseRunner, EncoderOutput

_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_ORT_QUIET = 3  # ERROR: keep session creation from printing warnings about unused initialisers etc.
_ORT_SILENT = 4  # FATAL only: while trying GPU providers (missing CUDA libraries otherwise log a wall of errors)


def _import_ort() -> Any:
    return import_backend("onnxruntime", "onnxruntime", "pip install onnxruntime")


def _preload_gpu_libraries(ort: Any) -> None:
    """Make the CUDA/cuDNN libraries of the nvidia-* wheels findable (onnxruntime-gpu >= 1.21)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload(cuda=True, cudnn=True, msvc=False)
    except Exception:  # noqa: BLE001 - missing libraries show up as a provider fallback below
        pass


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> tuple[list[str], list[str]]:
    """Map short names to ONNX Runtime provider names; return (to_use, unavailable_requested).

    ``None`` means: CUDA when available, then CPU. CPU is always appended last as the fallback.
    """
    if requested is None:
        wanted = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    else:
        wanted = [_ALIASES.get(p.lower(), p) for p in requested]
    use = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    missing = [p for p in wanted if p not in available]
    use.append("CPUExecutionProvider")
    return use, missing


class OrtBackend(BaseRunner):
    """Runner over ONNX Runtime (host buffers). ``with OrtBackend(bundle) as b: out = b.infer(views)``."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle | str | os.PathLike[str], providers: Sequence[str] | None = None,
                 threads: int | None = None, max_batch: int | None = None) -> None:
        super().__init__(max_batch=max_batch, device="cpu")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.requested_providers = list(providers) if providers is not None else None
        self.threads = threads
        self.providers: list[str] = []
        self._session: Any = None

    @classmethod
    def from_source(cls, bundle: Bundle, device: str = "cpu", **options: Any) -> OrtBackend:
        return cls(bundle, **options)

    @property
    def grid_size(self) -> int:
        return self.bundle.grid_size

    # -- lifecycle ---------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        ort = _import_ort()
        available = list(ort.get_available_providers())
        if any(p in available for p in _GPU_PROVIDERS):
            _preload_gpu_libraries(ort)
        use, missing = resolve_providers(self.requested_providers, available)
        opts = self._session_options(ort, use)
        previous = _set_ort_log_level(ort, _ORT_SILENT if len(use) > 1 else None)
        if len(use) > 1:
            opts.log_severity_level = _ORT_SILENT
        try:
            session = self._create(ort, opts, use)
        finally:
            _set_ort_log_level(ort, previous)
        active = list(session.get_providers())
        dropped = [p for p in use if p not in active] + missing
        if dropped:
            print(f"align3d_rt: onnxruntime: {', '.join(dropped)} not usable here; running on {', '.join(active)}",
                  file=sys.stderr)
        check_graph_input(self.bundle, session.get_inputs()[0].shape)
        self.providers = active
        self._session = session

    def _deactivate_impl(self) -> None:
        self._session = None

    def _session_options(self, ort: Any, providers: list[str]) -> Any:
        opts = ort.SessionOptions()
        opts.log_severity_level = _ORT_QUIET
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
        # FP16 graphs segfault ONNX Runtime's CPU session at ORT_ENABLE_ALL (DESIGN.md section 5).
        if self.bundle.precision == "fp16" and providers == ["CPUExecutionProvider"]:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        else:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return opts

    def _create(self, ort: Any, opts: Any, providers: list[str]) -> Any:
        path = str(self.bundle.onnx_path)
        try:
            return ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception:  # noqa: BLE001
            if providers != ["CPUExecutionProvider"]:
                # A GPU provider failed hard (missing CUDA libraries): retry on CPU alone.
                if self.bundle.precision == "fp16":
                    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
                try:
                    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
                except Exception as err2:  # noqa: BLE001
                    err = err2
            raise BundleError(f"{path}: onnxruntime cannot load the encoder ({str(err).splitlines()[0]})") from None

    # -- inference ---------------------------------------------------------------------------------
    def _infer_impl(self, views: Any) -> EncoderOutput:
        """One chunk of (V,S,S,3) uint8 views -> float32 maps and probabilities (host)."""
        s = self.bundle.image_size
        host = np.ascontiguousarray(arrays.to_host(views))
        if host.shape[1:] != (s, s, 3):
            raise ValueError(f"views must be uint8 (V,{s},{s},3); got {host.dtype} {host.shape}")
        maps, probs = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: host})
        return EncoderOutput(patch_maps=np.asarray(maps, np.float32), global_probs=np.asarray(probs, np.float32))


def check_graph_input(bundle: Bundle, shape: Sequence[Any], graph: Any = None) -> None:
    """Refuse (one line, at load) a graph whose fixed view size is not the manifest's ``image_size``."""
    s = bundle.image_size
    dims = list(shape)
    fixed = [d for d in dims[1:3] if isinstance(d, int)] if len(dims) == 4 else []
    if len(dims) != 4 or (isinstance(dims[3], int) and dims[3] != 3) or any(d != s for d in fixed):
        raise BundleError(f"{graph or bundle.onnx_path}: the graph takes views of shape {dims}, but the manifest's "
                          f"image_size is {s} (expected (batch, {s}, {s}, 3)); re-export the bundle")


def _set_ort_log_level(ort: Any, level: int | None) -> int | None:
    """Set ONNX Runtime's default logger severity; returns the previous level we set (or None)."""
    if level is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ort.set_default_logger_severity(level)
    return 2  # ONNX Runtime's default (WARNING)

