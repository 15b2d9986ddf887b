"""Options every scoring command shares (--run/--bundle/--backend/--device), from the backend registry."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from align3d_rt.cli.numbers import num_streams, thread_count
from align3d_rt.runtime import registry
from align3d_rt.runtime.devices import DEVICE_CHOICES


def add_detector_options(parser: argparse.ArgumentParser, required: bool = True, fastest_bundle: bool = False) -> None:
    """--run / --bundle (one of them), --backend (choices from the registry), --device. ``fastest_bundle``: the
    command picks a bundle's fastest CPU backend when none is asked (choose_bundle_backend); the help says so."""
    src = parser.add_mutually_exclusive_group(required=required)
    src.add_argument("--run", type=Path, help="training run directory (backends: "
                     f"{', '.join(registry.list_backends('run'))})")
    src.add_argument("--bundle", type=Path, help="exported bundle directory (backends: "
                     f"{', '.join(registry.list_backends('bundle'))})")
    add_backend_option(parser, fastest_bundle=fastest_bundle)
    add_clip_weights_option(parser)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="auto (default): CUDA when a GPU is usable and the backend runs there, else cpu; "
                             "cpu forces the CPU (render, encoder, back-projection)")
    add_runner_options(parser)


# CLI flag -> runner option; only the backends that list the option in the registry accept it.
RUNNER_FLAGS = {
    "precision_hint": "--precision-hint",
    "performance_hint": "--performance-hint",
    "device_name": "--device-name",
    "num_streams": "--num-streams",
    "threads": "--threads",
}


def add_runner_options(parser: argparse.ArgumentParser) -> None:
    """Backend settings (each accepted only by the backends that take it, see the registry)."""
    def who(option: str) -> str:
        return ", ".join(registry.backends_with_option(option)) or "none"

    parser.add_argument("--precision-hint", choices=registry.option_choices("precision_hint"), default=None,
                        help=f"compute precision of the encoder ({who('precision_hint')}): auto (default) = bf16 "
                             "where the CPU computes bf16 natively, else f32; f32 keeps fp32 parity with torch")
    parser.add_argument("--performance-hint", choices=registry.option_choices("performance_hint"), default=None,
                        help=f"LATENCY (default, one sample at a time) or THROUGHPUT (streams; infer's default "
                             f"with --batch-size > 1) "
                             f"({who('performance_hint')})")
    parser.add_argument("--device-name", default=None,
                        help="the backend's own device name, e.g. CPU (default), GPU, NPU, AUTO "
                             f"({who('device_name')})")
    parser.add_argument("--num-streams", type=num_streams, default=None,
                        help=f"parallel inference streams ({who('num_streams')})")
    parser.add_argument("--threads", type=thread_count, default=None, help=f"encoder threads ({who('threads')})")


def throughput_for_batches(args: argparse.Namespace, batch_size: int) -> None:
    """Batches of clouds (``batch_size`` > 1) run with the THROUGHPUT performance hint (OpenVINO streams,
    the views split over parallel infer requests) when the backend takes the hint and none was given."""
    if batch_size < 2 or getattr(args, "performance_hint", None) is not None or getattr(args, "triton", None):
        return
    backend = getattr(args, "backend", None) or registry.default_backend(
        "run" if getattr(args, "run", None) is not None else "bundle")
    if "performance_hint" in registry.get(backend).option_names:
        args.performance_hint = "THROUGHPUT"


def choose_bundle_backend(args: argparse.Namespace) -> str:
    """How ``args.backend`` was chosen. With --bundle, no --backend and no --triton: set to the fastest backend
    that runs the bundle's files on the CPU (``registry.fastest_bundle_backend``); otherwise left as asked."""
    if getattr(args, "bundle", None) is None or args.backend is not None or getattr(args, "triton", None):
        return "asked" if args.backend is not None else "default"
    from align3d_rt.artifacts.bundle import bundle_formats
    from align3d_rt.errors import BundleError

    try:
        formats = bundle_formats(args.bundle)
    except BundleError:
        return "default"  # the bundle's problem is reported, in its own words, when the detector loads it
    args.backend = registry.fastest_bundle_backend(formats, getattr(args, "device", "auto"))
    order = " > ".join(registry.CPU_BUNDLE_SPEED_ORDER)
    return f"fastest installed backend for this bundle's files on the CPU (measured order: {order})"


def runner_options(args: argparse.Namespace, backend: str | None) -> dict[str, Any]:
    """The runner options given on the command line, checked against what ``backend`` takes."""
    from align3d_rt.errors import Align3DError

    given = {opt: getattr(args, opt) for opt in RUNNER_FLAGS if getattr(args, opt, None) is not None}
    if not given:
        return {}
    if backend is None:
        backend = registry.default_backend("run" if getattr(args, "run", None) is not None else "bundle")
    takes = registry.get(backend).option_names
    for opt in given:
        if opt not in takes:
            raise Align3DError(f"{RUNNER_FLAGS[opt]}: backend '{backend}' does not take it (backends that do: "
                               f"{', '.join(registry.backends_with_option(opt)) or 'none'})")
    return given


def add_backend_option(parser: argparse.ArgumentParser, source: str | None = None,
                       fastest_bundle: bool = False) -> None:
    names = registry.list_backends(source)
    for_bundle = (f"the first installed of {', '.join(registry.CPU_BUNDLE_SPEED_ORDER)} that runs the bundle's files "
                  f"(the fastest measured on an AMX Xeon; {registry.default_backend('bundle')} with --device cuda)"
                  if fastest_bundle else registry.default_backend("bundle"))
    default = f"default: {registry.default_backend(source)}" if source else (
        f"default: {registry.default_backend('run')} for --run, {for_bundle} for --bundle")
    parser.add_argument("--backend", choices=names, default=None,
                        help=f"encoder backend ({default}). {registry.describe()}")


def add_clip_weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip-weights", type=Path, default=None,
                        help="where the run's CLIP weights file is now (moved, or another format of the same "
                             "weights: OpenAI .pt, safetensors, hub cache); must hold the tensors the run recorded")


def build_detector(args: argparse.Namespace) -> Any:
    """The Detector the options describe."""
    from align3d_rt.errors import Align3DError
    from align3d_rt.runtime.detector import Detector

    options = runner_options(args, args.backend)
    weights = getattr(args, "clip_weights", None)
    if getattr(args, "run", None) is not None:
        return Detector.from_run(args.run, backend=args.backend, device=args.device, clip_weights=weights, **options)
    if weights is not None:
        raise Align3DError(f"--clip-weights {weights}: a bundle carries its encoder; the option applies to --run")
    return Detector.from_bundle(args.bundle, backend=args.backend, device=args.device, **options)
