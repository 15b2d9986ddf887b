"""The registry of encoder backends: every CLI and the Detector take their choices from here.

A backend is one module under ``align3d_rt.runtime`` with a ``BaseRunner`` subclass that has a
``from_source(source, device=..., **options)`` classmethod, plus one ``register(...)`` line below.
Its module is imported only when a runner is created, so a backend never pays for another's imports.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from align3d_rt.errors import Align3DError, BackendUnavailable

SOURCES = ("run", "bundle")  # what a backend runs: a training run directory or an exported bundle


@dataclass(frozen=True)
class Variant:
    """One configuration of a backend that the benchmark measures (``align3d-rt bench`` rows).

    ``key``: short id, unique within the backend (the row is ``backend:key``). ``precision``: the
    precision of the bundle it runs (bundle backends: exported in the backend's first format) or the
    compute precision (run backends). ``options``: runner options (keyword arguments of from_source).
    ``export_options``: extra keyword arguments of the bundle export. ``needs_gpu``: runs only where a
    CUDA GPU is usable. ``engine``: the bundle needs a GPU engine built for this machine first.
    """

    key: str
    label: str
    precision: str = "fp32"
    options: tuple[tuple[str, Any], ...] = ()
    export_options: tuple[tuple[str, Any], ...] = ()
    needs_gpu: bool = False
    engine: bool = False
    note: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """What a backend needs and offers."""

    name: str
    module: str               # import path of the backend module
    runner: str               # BaseRunner subclass in that module
    source: str               # 'run' or 'bundle'
    devices: tuple[str, ...]  # devices it can take inputs on and leave outputs on ('cpu', 'cuda')
    precisions: tuple[str, ...]
    install_hint: str
    summary: str
    options: tuple[str, ...] = ()  # runner options the CLI may pass (keyword arguments of from_source)
    formats: tuple[str, ...] = ()  # bundle files it runs: export formats ('onnx', or the IR's --format name)
    variants: tuple[Variant, ...] = ()  # what ``align3d-rt bench`` measures (default: one row per precision)

    def bench_variants(self) -> tuple[Variant, ...]:
        """The benchmarked configurations: ``variants``, or one plain row per precision."""
        return self.variants or tuple(Variant(p, p, p) for p in self.precisions)

    def load(self) -> Any:
        """The runner class (imports the backend module)."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as err:
            raise BackendUnavailable(f"backend '{self.name}' is not available here: module '{err.name or err}' is "
                                     f"not installed ({self.install_hint})") from None
        return getattr(module, self.runner)


_BACKENDS: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add a backend (a name registered twice is an error)."""
    if spec.source not in SOURCES:
        raise ValueError(f"backend {spec.name!r}: source must be one of {SOURCES}, got {spec.source!r}")
    if spec.name in _BACKENDS and _BACKENDS[spec.name] != spec:
        raise ValueError(f"backend {spec.name!r} is already registered")
    _BACKENDS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a backend (for tests and plug-ins)."""
    _BACKENDS.pop(name, None)


def list_backends(source: str | None = None) -> list[str]:
    """Registered backend names, in registration order (optionally only those running ``source``)."""
    return [n for n, s in _BACKENDS.items() if source is None or s.source == source]


def get(name: str) -> BackendSpec:
    if name not in _BACKENDS:
        raise Align3DError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}")
    return _BACKENDS[name]


def default_backend(source: str) -> str:
    """The first registered backend for ``source`` ('run' or 'bundle')."""
    names = list_backends(source)
    if not names:
        raise Align3DError(f"no backend registered for a {source}")
    return names[0]


def describe() -> str:
    """One line per backend for --help texts."""
    return "; ".join(f"{s.name} ({s.source}, {'/'.join(s.devices)}): {s.summary}" for s in _BACKENDS.values())


def backends_for_format(fmt: str) -> list[str]:
    """Names of the bundle backends that run files of export format ``fmt``."""
    return [n for n, s in _BACKENDS.items() if fmt in s.formats]


def backends_with_option(option: str) -> list[str]:
    """Names of the backends whose runner takes ``option``."""
    return [n for n, s in _BACKENDS.items() if option in s.options]


def create_runner(name: str, source: Any, device: str = "cpu", **options: Any) -> Any:
    """A new, inactive runner of backend ``name`` over ``source`` (a RunArtifacts or a Bundle)."""
    spec = get(name)
    if device not in spec.devices:
        raise BackendUnavailable(f"backend '{name}' runs on {', '.join(spec.devices)}, not on '{device}'")
    try:
        return spec.load().from_source(source, device=device, **options)
    except ModuleNotFoundError as err:  # a backend module importing its library lazily
        raise BackendUnavailable(f"backend '{name}' is not available here: module '{err.name or err}' is not "
                                 f"installed ({spec.install_hint})") from None


_CPU_ORT = (("providers", ("cpu",)),)
_OV_INT8_CALIBRATION = (("calibration_samples", 2),)  # timing does not depend on the calibration: the quick choice

register(BackendSpec("torch", "align3d_rt.runtime.torch_backend", "TorchBackend", "run", ("cpu", "cuda"),
                     ("fp32", "bf16", "fp16"), "pip install torch open_clip_torch",
                     "the reference: the run's EncoderGraph in eager torch (bf16/fp16 autocast with --precision-hint)",
                     ("precision_hint",), (),
                     (Variant("fp32", "fp32 eager", "fp32", note="the paper's baseline"),
                      Variant("bf16", "bf16 autocast", "bf16", (("precision_hint", "bf16"),)),
                      Variant("fp16", "fp16 autocast", "fp16", (("precision_hint", "f16"),), needs_gpu=True),
                      Variant("compile", "compiled (torch.compile) fp32", "fp32", (("compile", True),),
                              note="compiled by the warm-up call"))))
register(BackendSpec("onnxruntime", "align3d_rt.runtime.onnxruntime_backend", "OrtBackend", "bundle", ("cpu",),
                     ("fp32", "fp16", "int8"), "pip install onnxruntime (or onnxruntime-gpu)",
                     "the bundle's encoder.onnx; host buffers (CUDA execution provider when onnxruntime-gpu has one)",
                     ("threads",), ("onnx",),
                     (Variant("fp32", "fp32 (CPU EP)", "fp32", _CPU_ORT),
                      Variant("int8", "int8 dynamic (CPU EP)", "int8", _CPU_ORT),
                      Variant("cuda-fp32", "fp32 (CUDA EP)", "fp32", (("providers", ("cuda",)),), needs_gpu=True))))
register(BackendSpec("tensorrt", "align3d_rt.runtime.tensorrt_backend", "TrtBackend", "bundle", ("cuda",), ("fp16",),
                     "pip install tensorrt (needs an NVIDIA GPU)", "the bundle's cached engine for this GPU",
                     (), ("onnx",),
                     (Variant("fp16", "fp16 engine", "fp16", needs_gpu=True, engine=True),)))
register(BackendSpec("openvino", "align3d_rt.runtime.openvino_backend", "OpenVinoBackend", "bundle", ("cpu",),
                     ("fp32", "int8", "int8-weights"), "pip install openvino",
                     "the bundle's OpenVINO IR (export --format openvino); CPU device, bf16 compute where "
                     "the CPU has it",
                     ("device_name", "precision_hint", "performance_hint", "num_streams", "threads"), ("openvino",),
                     (Variant("fp32", "fp32 IR, f32 compute", "fp32", (("precision_hint", "f32"),)),
                      Variant("bf16-hint", "fp32 IR, bf16 hint", "fp32", (("precision_hint", "bf16"),),
                              note="f32 where the CPU has no bf16"),
                      Variant("int8", "int8 IR (NNCF), auto hint", "int8", (("precision_hint", "auto"),),
                              _OV_INT8_CALIBRATION, note="calibrated on 2 generated clouds (18 views)"),
                      Variant("int8-throughput", "int8 IR (NNCF), auto hint, THROUGHPUT", "int8",
                              (("precision_hint", "auto"), ("performance_hint", "THROUGHPUT")), _OV_INT8_CALIBRATION,
                              note="streams: a batch's views split over parallel infer requests"))))
