"""OpenVINO encoder backend (torch-free): runs a bundle's OpenVINO IR (encoder.xml/.bin).

Written by ``align3d-rt export --format openvino`` (fp32, NNCF int8 or int8 weights). Settings:
- ``device_name``: the OpenVINO device, CPU (default), GPU, NPU or AUTO; a device OpenVINO does not
  report here is refused with one line (inputs and outputs stay host arrays either way);
- ``performance_hint``: LATENCY (default: one sample at a time, one request over all cores) or
  THROUGHPUT (large batches: OpenVINO makes several streams, and each chunk of views is split over
  ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` infer requests run at once);
- ``precision_hint``: the compute precision (``INFERENCE_PRECISION_HINT``): ``auto`` (default) = bf16
  when the device reports BF16 in OPTIMIZATION_CAPABILITIES (AVX512-BF16 / AMX CPUs), else f32; or
  bf16 / f16 / f32. A hint the device cannot honour gives one notice line and falls back to f32.
  Only f32 keeps an fp32 IR within 1e-4 of torch; bf16 is the fast route;
- ``num_streams`` / ``threads``: ``NUM_STREAMS`` / ``INFERENCE_NUM_THREADS`` (default: OpenVINO's choice);
- ``cache``: compiled models are cached under ``align3d_rt.paths.cache_dir('openvino')`` (``CACHE_DIR``,
  one sub-folder per device/precision/hint/streams/threads setting) so the second start skips
  compilation; ``cache=False`` turns it off.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import Bundle
from align3d_rt.errors import BundleError
from align3d_rt.loaders import OpenVinoCompiler, choose_precision_hint
from align3d_rt.runtime import arrays, registry
from align3d_rt.runtime.base import BundleRunner, EncoderOutput, check_graph_input
from align3d_rt.vocabulary import PerformanceHint, PrecisionHint

__all__ = ["OpenVinoBackend", "choose_precision_hint", "infer_split"]


class OpenVinoBackend(BundleRunner):
    """Runner over OpenVINO (host buffers). ``with OpenVinoBackend(bundle) as b: out = b.infer(views)``."""

    name = "openvino"

    def __init__(self, bundle: Bundle | str | os.PathLike[str], device_name: str = "CPU",
                 performance_hint: str = PerformanceHint.LATENCY, precision_hint: str | None = PrecisionHint.AUTO,
                 num_streams: int | str | None = None, threads: int | None = None, cache: bool = True,
                 max_batch: int | None = None) -> None:
        super().__init__(bundle, max_batch=max_batch, device="cpu")
        ir = self.bundle.ir
        if ir is None:
            raise BundleError(f"{self.bundle.path}: the bundle has no OpenVINO IR; export it with "
                              f"`align3d-rt export --format openvino`")
        self.ir = ir
        self.xml_path = self.bundle.path / str(ir["xml"])
        self.device_name = str(device_name).upper()
        self.performance_hint = registry.parse_option(self.name, "performance_hint", performance_hint)
        self.requested_precision_hint = registry.parse_option(self.name, "precision_hint",
                                                              precision_hint or PrecisionHint.AUTO)
        self.num_streams = num_streams
        self.threads = threads
        self.cache = cache
        self.compile_model = OpenVinoCompiler(self.xml_path, self.device_name, self.requested_precision_hint,
                                              self.performance_hint, num_streams, threads, cache)
        self.precision_hint = ""  # the one in use, set on activation
        self._compiled: Any = None
        self._pool: list[Any] | None = None  # THROUGHPUT: one infer request per stream
        self._requests = 1

    @property
    def ir_precision(self) -> str:
        return str(self.ir.get("precision", "fp32"))

    @property
    def detector_info(self) -> dict[str, Any]:
        """What the Detector records about this runner (after activation)."""
        return {"precision": self.ir_precision, "compute_precision": self.precision_hint,
                "openvino_device": self.device_name, "performance_hint": str(self.performance_hint),
                "infer_requests": self._requests}

    # -- lifecycle ---------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        compiled, hint = self.compile_model()
        shape = compiled.inputs[0].get_partial_shape()
        check_graph_input(self.bundle, [d.get_length() if d.is_static else "?" for d in shape], self.xml_path)
        self._compiled = compiled
        self.precision_hint = hint
        if self.performance_hint == PerformanceHint.THROUGHPUT:
            self._requests = max(1, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            if self._requests > 1:
                self._pool = [self._compiled.create_infer_request() for _ in range(self._requests)]

    def _deactivate_impl(self) -> None:
        self._pool = None
        self._compiled = None
        self._requests = 1
        self.precision_hint = ""

    # -- inference ---------------------------------------------------------------------------------
    def _infer_impl(self, views: Any) -> EncoderOutput:
        """One chunk of (V,S,S,3) uint8 views -> float32 maps and probabilities (host)."""
        host = np.ascontiguousarray(arrays.to_host(views))
        if self._pool is None or host.shape[0] < 2:
            res = self._compiled(host)
            return EncoderOutput(patch_maps=np.array(res[0], np.float32, copy=True),
                                 global_probs=np.array(res[1], np.float32, copy=True))
        return self._infer_split(host)

    def _infer_split(self, host: np.ndarray) -> EncoderOutput:
        assert self._pool is not None
        maps, probs = infer_split(self._pool, host)
        return EncoderOutput(patch_maps=maps, global_probs=probs)


def infer_split(requests: list[Any], host: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps, probs) of ``host`` views split into near-equal parts, one per infer request, run at once.

    Plain requests and ``wait()``, no ``AsyncInferQueue`` callback: a callback needs the GIL on
    OpenVINO's thread, and freeing such a queue while holding the GIL deadlocked (seen in a test run)."""
    parts = [rows for rows in np.array_split(np.arange(host.shape[0]), min(len(requests), host.shape[0]))]
    for request, rows in zip(requests, parts, strict=False):  # fewer parts than requests for few views
        request.start_async(np.ascontiguousarray(host[rows[0]:rows[-1] + 1]))
    for request in requests[:len(parts)]:
        request.wait()
    used = requests[:len(parts)]
    return (np.concatenate([np.array(r.get_output_tensor(0).data, np.float32, copy=True) for r in used]),
            np.concatenate([np.array(r.get_output_tensor(1).data, np.float32, copy=True) for r in used]))
