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
import sys
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import Bundle, load_bundle
from align3d_rt.errors import BackendUnavailable, BundleError, import_backend
from align3d_rt.runtime import arrays
from align3d_rt.runtime.base import BaseRunner, EncoderOutput

PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
PRECISION_HINTS = ("auto", "bf16", "f16", "f32")
_HINT_ALIASES = {"fp32": "f32", "float32": "f32", "fp16": "f16", "float16": "f16", "bfloat16": "bf16"}
_CAPABILITY = {"bf16": "BF16", "f16": "FP16", "f32": "FP32"}


def _import_ov() -> Any:
    return import_backend("openvino", "openvino", "pip install openvino")


def normalise_precision_hint(hint: str | None) -> str:
    """'auto', 'bf16', 'f16' or 'f32' (accepts fp32/fp16/bfloat16 spellings)."""
    name = _HINT_ALIASES.get(str(hint or "auto").lower(), str(hint or "auto").lower())
    if name not in PRECISION_HINTS:
        raise BackendUnavailable(f"openvino: precision hint {hint!r} is not one of {', '.join(PRECISION_HINTS)}")
    return name


def choose_precision_hint(requested: str, capabilities: list[str], device: str) -> tuple[str, str | None]:
    """(hint to use, notice line or None) for the device's OPTIMIZATION_CAPABILITIES."""
    caps = {str(c).upper() for c in capabilities}
    if requested == "auto":
        return ("bf16" if "BF16" in caps else "f32"), None
    if _CAPABILITY[requested] in caps or requested == "f32":
        return requested, None
    return "f32", (f"align3d_rt: openvino: device {device} cannot compute in {requested} "
                   f"(capabilities: {', '.join(sorted(caps)) or 'none reported'}); using f32")


class OpenVinoBackend(BaseRunner):
    """Runner over OpenVINO (host buffers). ``with OpenVinoBackend(bundle) as b: out = b.infer(views)``."""

    name = "openvino"

    def __init__(self, bundle: Bundle | str | os.PathLike[str], device_name: str = "CPU",
                 performance_hint: str = "LATENCY", precision_hint: str | None = "auto",
                 num_streams: int | str | None = None, threads: int | None = None, cache: bool = True,
                 max_batch: int | None = None) -> None:
        super().__init__(max_batch=max_batch, device="cpu")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        ir = self.bundle.ir
        if ir is None:
            raise BundleError(f"{self.bundle.path}: the bundle has no OpenVINO IR; export it with "
                              f"`align3d-rt export --format openvino`")
        self.ir = ir
        self.xml_path = self.bundle.path / str(ir["xml"])
        self.device_name = str(device_name).upper()
        hint = str(performance_hint).upper()
        if hint not in PERFORMANCE_HINTS:
            raise BackendUnavailable(f"openvino: performance hint {performance_hint!r} is not one of "
                                     f"{', '.join(PERFORMANCE_HINTS)}")
        self.performance_hint = hint
        self.requested_precision_hint = normalise_precision_hint(precision_hint)
        self.precision_hint = ""  # the one in use, set on activation
        self.num_streams = num_streams
        self.threads = threads
        self.cache = cache
        self._compiled: Any = None
        self._pool: list[Any] | None = None  # THROUGHPUT: one infer request per stream
        self._requests = 1

    @classmethod
    def from_source(cls, bundle: Bundle, device: str = "cpu", **options: Any) -> OpenVinoBackend:
        return cls(bundle, **options)

    @property
    def grid_size(self) -> int:
        return self.bundle.grid_size

    @property
    def ir_precision(self) -> str:
        return str(self.ir.get("precision", "fp32"))

    @property
    def detector_info(self) -> dict[str, Any]:
        """What the Detector records about this runner (after activation)."""
        return {"precision": self.ir_precision, "compute_precision": self.precision_hint,
                "openvino_device": self.device_name, "performance_hint": self.performance_hint}

    # -- lifecycle ---------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        ov = _import_ov()
        core = ov.Core()
        available = list(core.available_devices)
        base = self.device_name.split(".")[0].split(":")[0]
        if base not in ("AUTO", "MULTI", "HETERO") and not any(d == self.device_name or d.split(".")[0] == base
                                                                for d in available):
            raise BackendUnavailable(f"openvino: device {self.device_name} is not available here "
                                     f"(OpenVINO reports: {', '.join(available) or 'none'})")
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.performance_hint}
        caps_device = "CPU" if base in ("AUTO", "MULTI", "HETERO") else self.device_name
        try:
            caps = list(core.get_property(caps_device, "OPTIMIZATION_CAPABILITIES"))
        except Exception:  # noqa: BLE001 - a device without the property: only f32 is safe
            caps = ["FP32"]
        hint, notice = choose_precision_hint(self.requested_precision_hint, caps, self.device_name)
        if notice:
            print(notice, file=sys.stderr)
        config["INFERENCE_PRECISION_HINT"] = hint
        if self.num_streams is not None:
            config["NUM_STREAMS"] = str(self.num_streams)
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.cache:
            from align3d_rt.paths import cache_dir

            # One cache folder per compile setting: OpenVINO 2026.4 keys its CPU cache blobs without the
            # precision hint, and a bf16 compile that picks up an f32 blob crashes (segfault) on infer.
            streams = "default" if self.num_streams is None else str(self.num_streams)
            key = f"{self.device_name}-{hint}-{self.performance_hint}-s{streams}-t{self.threads or 0}"
            config["CACHE_DIR"] = str(cache_dir("openvino") / "".join(c if c.isalnum() or c in "-_." else "_"
                                                                      for c in key))
        try:
            self._compiled = core.compile_model(str(self.xml_path), self.device_name, config)
        except Exception as err:  # noqa: BLE001 - one line, never OpenVINO's trace
            first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
            raise BundleError(f"{self.xml_path}: OpenVINO cannot compile the IR for {self.device_name} "
                              f"({first})") from None
        from align3d_rt.runtime.onnxruntime_backend import check_graph_input

        shape = self._compiled.inputs[0].get_partial_shape()
        check_graph_input(self.bundle, [d.get_length() if d.is_static else "?" for d in shape], self.xml_path)
        self.precision_hint = hint
        if self.performance_hint == "THROUGHPUT":
            self._requests = max(1, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            if self._requests > 1:
                self._pool = [self._compiled.create_infer_request() for _ in range(self._requests)]

    def _deactivate_impl(self) -> None:
        self._pool = None
        self._compiled = None

    # -- inference ---------------------------------------------------------------------------------
    def _infer_impl(self, views: Any) -> EncoderOutput:
        """One chunk of (V,S,S,3) uint8 views -> float32 maps and probabilities (host)."""
        s = self.bundle.image_size
        host = np.ascontiguousarray(arrays.to_host(views))
        if host.shape[1:] != (s, s, 3):
            raise ValueError(f"views must be uint8 (V,{s},{s},3); got {host.dtype} {host.shape}")
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
