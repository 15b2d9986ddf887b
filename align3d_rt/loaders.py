"""Loaders: the one place an ONNX Runtime session is made and an OpenVINO model compiled (polygraphy style).

A loader is a frozen description of the settings that matter, called to load: ``OrtSessionLoader(path,
precision, threads, providers)()`` is a session, ``OpenVinoCompiler(xml, device, precision_hint, ...)()``
a compiled model with the precision hint it used. The runners (runtime/), the Triton encoder model, the
export-time checks (export/) and the benchmarks (bench/) all load through these, so a setting
(threads, the fp16 optimisation-level workaround, providers, hints, the compile cache) is written once.

This module sits beside ``errors`` and ``paths``, outside the layers: export/ and runtime/ both use it
and may not import each other. It imports neither.
"""
from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from align3d_rt.errors import BackendUnavailable, BundleError, import_backend

# -- ONNX Runtime ----------------------------------------------------------------------------------
CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
PROVIDER_ALIASES = {
    "cpu": CPU_PROVIDER,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
ORT_QUIET = 3  # ERROR: keep session creation from printing warnings about unused initialisers etc.
ORT_SILENT = 4  # FATAL only: while trying GPU providers (missing CUDA libraries otherwise log a wall of errors)
ORT_DEFAULT_LOG_LEVEL = 2  # ONNX Runtime's own default (WARNING)


def import_onnxruntime() -> Any:
    return import_backend("onnxruntime", "onnxruntime", "pip install onnxruntime")


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> tuple[list[str], list[str]]:
    """Map short names to ONNX Runtime provider names; return (to_use, unavailable_requested).

    ``None`` means: CUDA when available, then CPU. CPU is always appended last as the fallback.
    """
    if requested is None:
        wanted = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    else:
        wanted = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]
    use = [p for p in wanted if p in available and p != CPU_PROVIDER]
    missing = [p for p in wanted if p not in available]
    use.append(CPU_PROVIDER)
    return use, missing


@dataclass(frozen=True)
class OrtSessionLoader:
    """An ONNX Runtime session over ``path``; call it to load.

    ``precision``: the graph's (fp16 graphs are optimised at ORT_ENABLE_EXTENDED on the CPU provider:
    ORT_ENABLE_ALL segfaults there, DESIGN.md section 5). ``threads``: intra-op threads (None/0: ONNX
    Runtime's choice). ``providers``: short or full provider names, None = CUDA when available, then
    CPU; a GPU provider that cannot be used falls back to CPU with one line on stderr.
    """

    path: Path
    precision: str = "fp32"
    threads: int | None = None
    providers: tuple[str, ...] | None = ("cpu",)

    def session_options(self, ort: Any, providers: Sequence[str]) -> Any:
        opts = ort.SessionOptions()
        opts.log_severity_level = ORT_SILENT if len(providers) > 1 else ORT_QUIET
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
        level = ort.GraphOptimizationLevel
        cpu_fp16 = self.precision == "fp16" and list(providers) == [CPU_PROVIDER]
        opts.graph_optimization_level = level.ORT_ENABLE_EXTENDED if cpu_fp16 else level.ORT_ENABLE_ALL
        return opts

    def __call__(self) -> Any:
        ort = import_onnxruntime()
        available = list(ort.get_available_providers())
        use, missing = resolve_providers(self.providers, available)
        if len(use) > 1:
            _preload_gpu_libraries(ort)
            _set_ort_log_level(ort, ORT_SILENT)
        try:
            session = self._create(ort, use)
        finally:
            if len(use) > 1:
                _set_ort_log_level(ort, ORT_DEFAULT_LOG_LEVEL)
        dropped = [p for p in use if p not in session.get_providers()] + missing
        if dropped:
            print(f"align3d_rt: onnxruntime: {', '.join(dropped)} not usable here; running on "
                  f"{', '.join(session.get_providers())}", file=sys.stderr)
        return session

    def _create(self, ort: Any, providers: list[str]) -> Any:
        path = str(self.path)
        attempts = [providers] if providers == [CPU_PROVIDER] else [providers, [CPU_PROVIDER]]
        problem = ""
        for use in attempts:  # a GPU provider that fails hard (missing CUDA libraries): retry on CPU alone
            try:
                return ort.InferenceSession(path, sess_options=self.session_options(ort, use), providers=use)
            except Exception as err:  # noqa: BLE001 - one line below, never ONNX Runtime's trace
                problem = (str(err).splitlines() or [type(err).__name__])[0]
        raise BundleError(f"{path}: onnxruntime cannot load the encoder ({problem})")


def _preload_gpu_libraries(ort: Any) -> None:
    """Make the CUDA/cuDNN libraries of the nvidia-* wheels findable (onnxruntime-gpu >= 1.21)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload(cuda=True, cudnn=True, msvc=False)
    except Exception:  # noqa: BLE001 - missing libraries show up as a provider fallback
        pass


def _set_ort_log_level(ort: Any, level: int) -> None:
    """Set ONNX Runtime's default logger severity (process-wide)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ort.set_default_logger_severity(level)


# -- OpenVINO --------------------------------------------------------------------------------------
_CAPABILITY = {"bf16": "BF16", "f16": "FP16", "f32": "FP32"}
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO")


def import_openvino() -> Any:
    return import_backend("openvino", "openvino", "pip install openvino")


_CORE: list[Any] = []            # the process's one ov.Core, once made; never released
_CORE_LOCK = threading.Lock()


def openvino_core() -> Any:
    """The process's one ``ov.Core``: every OpenVINO use in align3d_rt goes through it, and it lives until exit.

    OpenVINO's CPU plugin swaps the creating thread's signal stack (``sigaltstack``, room for AMX state) when
    a Core loads it, and on release restores the stack it found only if its own is still installed, then
    unmaps its own. Two Cores released in the order they were made leave the main thread's signal stack
    pointing at unmapped memory: the next signal the main thread handles (SIGTERM, Ctrl-C) kills the
    process with SIGSEGV and no traceback (seen in CI; ``tests/test_openvino_core.py``). One Core, never
    released, cannot do that."""
    with _CORE_LOCK:
        if not _CORE:
            _CORE.append(import_openvino().Core())
        return _CORE[0]


def choose_precision_hint(requested: str, capabilities: Sequence[str], device: str) -> tuple[str, str | None]:
    """(hint to use, notice line or None) for the device's OPTIMIZATION_CAPABILITIES ('auto': bf16 where
    the device has it, else f32; a hint the device cannot honour: f32 and a notice)."""
    caps = {str(c).upper() for c in capabilities}
    if requested == "auto":
        return ("bf16" if "BF16" in caps else "f32"), None
    if _CAPABILITY[requested] in caps or requested == "f32":
        return str(requested), None
    return "f32", (f"align3d_rt: openvino: device {device} cannot compute in {requested} "
                   f"(capabilities: {', '.join(sorted(caps)) or 'none reported'}); using f32")


class CompiledOpenVino(NamedTuple):
    """A compiled model and the INFERENCE_PRECISION_HINT it was compiled with."""

    model: Any
    precision_hint: str


@dataclass(frozen=True)
class OpenVinoCompiler:
    """An OpenVINO model (IR path or ``ov.Model``) compiled for ``device``; call it to compile.

    ``precision_hint``: auto / bf16 / f16 / f32, resolved against the device's capabilities
    (``choose_precision_hint``). ``performance_hint``: LATENCY or THROUGHPUT. ``num_streams`` /
    ``threads``: NUM_STREAMS / INFERENCE_NUM_THREADS (None: OpenVINO's choice). ``cache``: compiled
    blobs under ``paths.cache_dir('openvino')``, one folder per setting. ``core``: an ``ov.Core`` to use
    instead of the process's one (``openvino_core``).
    """

    model: Any
    device: str = "CPU"
    precision_hint: str = "auto"
    performance_hint: str = "LATENCY"
    num_streams: int | str | None = None
    threads: int | None = None
    cache: bool = False
    core: Any = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return str(self.model) if isinstance(self.model, (str, Path)) else "the OpenVINO model"

    def config(self, hint: str) -> dict[str, Any]:
        """The compile properties for precision hint ``hint`` (already resolved)."""
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.performance_hint, "INFERENCE_PRECISION_HINT": hint}
        if self.num_streams is not None:
            config["NUM_STREAMS"] = str(self.num_streams)
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.cache:
            from align3d_rt.paths import cache_dir

            # One cache folder per compile setting: OpenVINO 2026.4 keys its CPU cache blobs without the
            # precision hint, and a bf16 compile that picks up an f32 blob crashes (segfault) on infer.
            streams = "default" if self.num_streams is None else str(self.num_streams)
            key = f"{self.device}-{hint}-{self.performance_hint}-s{streams}-t{self.threads or 0}"
            config["CACHE_DIR"] = str(cache_dir("openvino") / "".join(c if c.isalnum() or c in "-_." else "_"
                                                                      for c in key))
        return config

    def capabilities(self, core: Any) -> list[str]:
        """The device's OPTIMIZATION_CAPABILITIES (a virtual device: the CPU's; none reported: FP32)."""
        base = self.device.split(".")[0].split(":")[0]
        try:
            return list(core.get_property("CPU" if base in _VIRTUAL_DEVICES else self.device,
                                          "OPTIMIZATION_CAPABILITIES"))
        except Exception:  # noqa: BLE001 - a device without the property: only f32 is safe
            return ["FP32"]

    def check_device(self, core: Any) -> None:
        """Refuse (one line) a device OpenVINO does not report here."""
        available = list(core.available_devices)
        base = self.device.split(".")[0].split(":")[0]
        if base not in _VIRTUAL_DEVICES and not any(d == self.device or d.split(".")[0] == base for d in available):
            raise BackendUnavailable(f"openvino: device {self.device} is not available here "
                                     f"(OpenVINO reports: {', '.join(available) or 'none'})")

    def __call__(self) -> CompiledOpenVino:
        core = self.core if self.core is not None else openvino_core()
        self.check_device(core)
        hint, notice = choose_precision_hint(self.precision_hint, self.capabilities(core), self.device)
        if notice:
            print(notice, file=sys.stderr)
        model = str(self.model) if isinstance(self.model, Path) else self.model
        try:
            compiled = core.compile_model(model, self.device, self.config(hint))
        except Exception as err:  # noqa: BLE001 - one line, never OpenVINO's trace
            first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
            raise BundleError(f"{self.name}: OpenVINO cannot compile the IR for {self.device} ({first})") from None
        return CompiledOpenVino(compiled, hint)
