"""The ``align3d-rt`` command: one module per command in this package, each with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module's register(subparsers) adds its command. Modules must not import torch at import time
# (the line-side ONNX Runtime path runs without it).
_COMMAND_MODULES = (
    "align3d_rt.cli.synth",
    "align3d_rt.cli.render",
    "align3d_rt.cli.train",
    "align3d_rt.cli.infer",
    "align3d_rt.cli.eval",
    "align3d_rt.cli.demo",
    "align3d_rt.cli.export",
    "align3d_rt.cli.import_checkpoint",
    "align3d_rt.cli.parity",
    "align3d_rt.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align3d-rt", description="Align3D-AD zero-shot 3D anomaly detection")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    for mod_name in _COMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def _version() -> str:
    from align3d_rt import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    from align3d_rt.errors import Align3DError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on hub retries; weights come from the cache
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except Align3DError as err:
        print(f"align3d-rt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"align3d-rt {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
