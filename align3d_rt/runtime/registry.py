"""The registry of encoder backends: every CLI and the Detector take their choices from here.

A backend is one module under ``align3d_rt.runtime`` with a ``BaseRunner`` subclass that has a
``from_source(source, device=..., **options)`` classmethod, plus one ``register(...)`` line below.
Its module is imported only when a runner is created, so a backend never pays for another's imports.
"""
from __future__ import annotations

import builtins
import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from align3d_rt.errors import Align3DError, BackendUnavailable, OptionError
from align3d_rt.vocabulary import (
    IR_PRECISIONS,
    ONNX_PRECISIONS,
    ExportFormat,
    PerformanceHint,
    PrecisionHint,
    Source,
    StrEnum,
    parse,
    words,
)

SOURCES = tuple(Source)  # what a backend runs: a training run directory or an exported bundle


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
class RunnerOption:
    """One runner option the CLI may pass (a keyword argument of from_source): its type and its words.

    ``choices``: a StrEnum (every member) or a tuple of members; None for a free value of ``type``."""

    name: str
    type: type = str
    choices: builtins.type[StrEnum] | tuple[StrEnum, ...] | None = None

    @property
    def words(self) -> tuple[str, ...]:
        """The accepted values as text ('' when free)."""
        return tuple(str(m) for m in self.choices) if self.choices is not None else ()

    def parse(self, value: Any, backend: str) -> Any:
        """``value`` checked: a member of ``choices`` (aliases accepted), or of ``type``; else OptionError."""
        what = f"{backend}: {self.name.replace('_', ' ')}"
        if self.choices is not None:
            members = tuple(self.choices)
            return parse(type(members[0]), value, what, members)
        if self.type is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise OptionError(f"{what} {value!r} is not an integer")
        return value


@dataclass(frozen=True, kw_only=True)
class BackendSpec:
    """What a backend needs and offers (built with keywords)."""

    name: str
    module: str               # import path of the backend module
    runner: str               # BaseRunner subclass in that module
    source: Source            # what it runs: a run directory or a bundle
    devices: tuple[str, ...]  # devices it can take inputs on and leave outputs on ('cpu', 'cuda')
    precisions: tuple[str, ...]
    install_hint: str
    summary: str
    options: tuple[RunnerOption, ...] = ()  # runner options the CLI may pass (keyword arguments of from_source)
    formats: tuple[ExportFormat, ...] = ()  # bundle files it runs: export formats
    variants: tuple[Variant, ...] = ()  # what ``align3d-rt bench`` measures (default: one row per precision)
    reads_only_ir: bool = False  # runs only the bundle's OpenVINO IR: the other files hash while it compiles
    needs: tuple[str, ...] = ()  # top-level packages it imports when it runs (checked without importing them)

    def installed(self) -> bool:
        """Whether the packages it needs are installed (found, not imported)."""
        return all(importlib.util.find_spec(p) is not None for p in self.needs)

    def bench_variants(self) -> tuple[Variant, ...]:
        """The benchmarked configurations: ``variants``, or one plain row per precision."""
        return self.variants or tuple(Variant(p, p, p) for p in self.precisions)

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def option(self, name: str) -> RunnerOption:
        """The declared option ``name`` (KeyError when the backend does not take it)."""
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(name)

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
        raise ValueError(f"backend {spec.name!r}: source must be one of {', '.join(SOURCES)}, got {spec.source!r}")
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


# Bundle backends by measured CPU speed, fastest first. ViT-L-14-336 on an AMX Xeon, in one run: the int8 IR
# 6.59x torch fp32, the fp32 IR (f32 compute) 1.23x, onnxruntime on the bundle's fp32 graph 0.89x
# (docs/bench/cpu-vitl-openvino-2026-12-03b/bench_encoder_native.md). With OpenVINO's instruction sets capped
# (onnxruntime is not capped there, so not compared) the int8 IR ran 2.65x with AVX-512 VNNI, 1.65x with
# AVX-512, but 0.93x on AVX2 alone, where the fp32 IR (1.32x) is the bundle to export (docs/usage.md).
CPU_BUNDLE_SPEED_ORDER = ("openvino", "onnxruntime")


def fastest_bundle_backend(formats: Iterable[str], device: str) -> str:
    """The bundle backend to use when none is asked: on the CPU (``device`` cpu or auto), the first of
    CPU_BUNDLE_SPEED_ORDER that runs one of the bundle's ``formats`` and is installed; else the default."""
    have = set(formats)
    if device != "cuda":
        for name in CPU_BUNDLE_SPEED_ORDER:
            spec = _BACKENDS.get(name)
            if spec is not None and have.intersection(spec.formats) and spec.installed():
                return name
    return default_backend("bundle")


def describe() -> str:
    """One line per backend for --help texts."""
    return "; ".join(f"{s.name} ({s.source}, {'/'.join(s.devices)}): {s.summary}" for s in _BACKENDS.values())


def backends_for_format(fmt: str) -> list[str]:
    """Names of the bundle backends that run files of export format ``fmt``."""
    return [n for n, s in _BACKENDS.items() if fmt in s.formats]


def backends_with_option(option: str) -> list[str]:
    """Names of the backends whose runner takes ``option``."""
    return [n for n, s in _BACKENDS.items() if option in s.option_names]


def option_choices(option: str) -> tuple[str, ...]:
    """The values of ``option`` some backend takes (union in registration order; () for a free value)."""
    words: dict[str, None] = {}
    for spec in _BACKENDS.values():
        if option in spec.option_names:
            words.update(dict.fromkeys(spec.option(option).words))
    return tuple(words)


def parse_option(backend: str, option: str, value: Any) -> Any:
    """``value`` of ``option`` checked against what ``backend`` declares (OptionError when refused)."""
    return get(backend).option(option).parse(value, backend)


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
_PRECISION_HINT = RunnerOption("precision_hint", str, PrecisionHint)
_THREADS = RunnerOption("threads", int)

register(BackendSpec(
    name="torch", module="align3d_rt.runtime.torch_backend", runner="TorchBackend", source=Source.RUN,
    devices=("cpu", "cuda"), precisions=("fp32", "bf16", "fp16"), install_hint="pip install torch open_clip_torch",
    summary="the reference: the run's EncoderGraph in eager torch (bf16/fp16 autocast with --precision-hint)",
    options=(_PRECISION_HINT,),
    variants=(Variant("fp32", "fp32 eager", "fp32", note="the paper's baseline"),
              Variant("bf16", "bf16 autocast", "bf16", (("precision_hint", "bf16"),)),
              Variant("fp16", "fp16 autocast", "fp16", (("precision_hint", "f16"),), needs_gpu=True),
              Variant("compile", "compiled (torch.compile) fp32", "fp32", (("compile", True),),
                      note="compiled by the warm-up call"))))
register(BackendSpec(
    name="onnxruntime", module="align3d_rt.runtime.onnxruntime_backend", runner="OrtBackend", source=Source.BUNDLE,
    devices=("cpu",), precisions=words(ONNX_PRECISIONS), install_hint="pip install onnxruntime (or onnxruntime-gpu)",
    summary="the bundle's encoder.onnx; host buffers (CUDA execution provider when onnxruntime-gpu has one)",
    options=(_THREADS,), formats=(ExportFormat.ONNX,), needs=("onnxruntime",),
    variants=(Variant("fp32", "fp32 (CPU EP)", "fp32", _CPU_ORT),
              Variant("int8", "int8 dynamic (CPU EP)", "int8", _CPU_ORT),
              Variant("cuda-fp32", "fp32 (CUDA EP)", "fp32", (("providers", ("cuda",)),), needs_gpu=True))))
register(BackendSpec(
    name="tensorrt", module="align3d_rt.runtime.tensorrt_backend", runner="TrtBackend", source=Source.BUNDLE,
    devices=("cuda",), precisions=("fp16",), install_hint="pip install tensorrt (needs an NVIDIA GPU)",
    summary="the bundle's cached engine for this GPU", formats=(ExportFormat.ONNX,), needs=("tensorrt",),
    variants=(Variant("fp16", "fp16 engine", "fp16", needs_gpu=True, engine=True),)))
register(BackendSpec(
    name="openvino", module="align3d_rt.runtime.openvino_backend", runner="OpenVinoBackend", source=Source.BUNDLE,
    devices=("cpu",), precisions=words(IR_PRECISIONS),
    install_hint="pip install openvino",
    summary="the bundle's OpenVINO IR (export --format openvino); CPU device, bf16 compute where the CPU has it",
    options=(RunnerOption("device_name", str), _PRECISION_HINT, RunnerOption("performance_hint", str, PerformanceHint),
             RunnerOption("num_streams", str), _THREADS),
    formats=(ExportFormat.OPENVINO,), reads_only_ir=True, needs=("openvino",),
    variants=(Variant("fp32", "fp32 IR, f32 compute", "fp32", (("precision_hint", "f32"),)),
              Variant("bf16-hint", "fp32 IR, bf16 hint", "fp32", (("precision_hint", "bf16"),),
                      note="f32 where the CPU has no bf16"),
              Variant("int8", "int8 IR (NNCF), auto hint", "int8", (("precision_hint", "auto"),),
                      _OV_INT8_CALIBRATION, note="calibrated on 2 generated clouds (18 views)"),
              Variant("int8-throughput", "int8 IR (NNCF), auto hint, THROUGHPUT", "int8",
                      (("precision_hint", "auto"), ("performance_hint", "THROUGHPUT")), _OV_INT8_CALIBRATION,
                      note="streams: a batch's views split over parallel infer requests"))))
