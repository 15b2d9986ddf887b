"""Options every scoring command shares (--run/--bundle/--backend/--device), from the backend registry."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from align3d_rt.runtime import registry
from align3d_rt.runtime.devices import DEVICE_CHOICES


def add_detector_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--run / --bundle (one of them), --backend (choices from the registry), --device."""
    src = parser.add_mutually_exclusive_group(required=required)
    src.add_argument("--run", type=Path, help="training run directory (backends: "
                     f"{', '.join(registry.list_backends('run'))})")
    src.add_argument("--bundle", type=Path, help="exported bundle directory (backends: "
                     f"{', '.join(registry.list_backends('bundle'))})")
    add_backend_option(parser)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="auto (default): CUDA when a GPU is usable and the backend runs there, else cpu; "
                             "cpu forces the CPU (render, encoder, back-projection)")


def add_backend_option(parser: argparse.ArgumentParser, source: str | None = None) -> None:
    names = registry.list_backends(source)
    default = f"default: {registry.default_backend(source)}" if source else (
        f"default: {registry.default_backend('run')} for --run, {registry.default_backend('bundle')} for --bundle")
    parser.add_argument("--backend", choices=names, default=None,
                        help=f"encoder backend ({default}). {registry.describe()}")


def build_detector(args: argparse.Namespace) -> Any:
    """The Detector the options describe."""
    from align3d_rt.runtime.detector import Detector

    if getattr(args, "run", None) is not None:
        return Detector.from_run(args.run, backend=args.backend, device=args.device)
    return Detector.from_bundle(args.bundle, backend=args.backend, device=args.device)
