"""``align3d-rt export``: a training run -> a bundle (ONNX encoder + manifest), optionally a TensorRT engine."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align3d_rt.artifacts.bundle import PRECISIONS
from align3d_rt.errors import Align3DError



def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a training run to a bundle (ONNX encoder + manifest)")
    p.add_argument("--run", type=Path, required=True, help="training run directory")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write (replaced atomically)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32; fp16 (GPU/TensorRT source, LayerNorm/softmax in fp32); int8 (dynamic, CPU)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; the legacy exporter stops at 20)")
    p.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine (fp16 only; needs TensorRT + GPU)")
    p.add_argument("--min-batch", type=int, default=1, help="TensorRT profile: smallest view batch (default 1)")
    p.add_argument("--opt-batch", type=int, default=9, help="TensorRT profile: tuned view batch (default 9)")
    p.add_argument("--max-batch", type=int, default=18, help="TensorRT profile: largest view batch (default 18)")
    p.add_argument("--workspace-gb", type=float, default=4.0, help="TensorRT builder workspace in GiB (default 4)")
    p.set_defaults(func=run_export)



def run_export(args: argparse.Namespace) -> int:
    from align3d_rt.export.onnx_export import export_bundle

    if args.tensorrt:
        from align3d_rt.export.tensorrt_build import check_profile, import_tensorrt

        if args.precision != "fp16":
            raise Align3DError("--tensorrt: engines are built from the fp16 graph (TensorRT 11 is strongly typed); "
                               "add --precision fp16")
        try:
            check_profile(args.min_batch, args.opt_batch, args.max_batch)
        except ValueError as err:
            raise Align3DError(f"--min/opt/max-batch: {err}") from None
        import_tensorrt()  # fail before the long export when TensorRT is missing
    out = export_bundle(args.run, args.out, precision=args.precision, opset=args.opset)
    print(f"align3d-rt export: wrote {args.precision} bundle {out}", file=sys.stderr)
    if args.tensorrt:
        from align3d_rt.export.tensorrt_build import build_engine

        engine = build_engine(out, min_batch=args.min_batch, opt_batch=args.opt_batch, max_batch=args.max_batch,
                              workspace_gb=args.workspace_gb)
        print(f"align3d-rt export: built TensorRT engine {engine}", file=sys.stderr)
    return 0
