"""``align3d-rt export``: a training run -> a bundle (ONNX encoder + manifest), optionally a TensorRT engine
or (``--format openvino``) an OpenVINO IR beside the fp32 ONNX graph; ``--format triton``: a bundle -> a
Triton Inference Server model repository (export/triton_repository.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align3d_rt.artifacts.bundle import PRECISIONS
from align3d_rt.cli.export_triton import TRITON, add_triton_options, run_triton_export
from align3d_rt.cli.numbers import positive_float, positive_int
from align3d_rt.cli.options import add_clip_weights_option
from align3d_rt.errors import Align3DError
from align3d_rt.export.openvino_export import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_IR_PRECISION,
    EXPORT_FORMATS,
    IR_PRECISIONS,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a training run to a bundle (ONNX encoder + manifest)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="training run directory (--format onnx/openvino)")
    src.add_argument("--bundle", type=Path, help=f"exported bundle directory (--format {TRITON})")
    p.add_argument("--out", type=Path, required=True,
                   help="bundle directory to write (new, empty, or an earlier bundle with --overwrite; "
                        "written atomically; never inside --run); with --format triton the model repository")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing bundle (or Triton repository) at --out (only one align3d-rt wrote)")
    add_clip_weights_option(p)
    p.add_argument("--format", dest="fmt", choices=(*EXPORT_FORMATS, TRITON), default=EXPORT_FORMATS[0],
                   help=f"{EXPORT_FORMATS[0]} (default): encoder.onnx at --precision; {EXPORT_FORMATS[1]}: the fp32 "
                        f"encoder.onnx plus an OpenVINO IR (encoder.xml/.bin) at --precision; {TRITON}: a Triton "
                        f"model repository from --bundle (pipeline + encoder models; see --triton-*)")
    p.add_argument("--precision", choices=tuple(dict.fromkeys(PRECISIONS + IR_PRECISIONS)), default=None,
                   help="ONNX: fp32 (default); fp16 (GPU/TensorRT source, LayerNorm/softmax in fp32); int8 (dynamic, "
                        f"CPU). OpenVINO IR: {DEFAULT_IR_PRECISION} (default: the fastest route measured; NNCF "
                        "post-training quantization calibrated on the run's training samples, bf16 compute where "
                        "the CPU has it); fp32; int8-weights (NNCF weight compression)")
    p.add_argument("--calibration-samples", type=positive_int, default=None,
                   help=f"OpenVINO int8: samples whose rendered views calibrate the quantization "
                        f"(default {DEFAULT_CALIBRATION_SAMPLES}; recorded in the manifest)")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset, 13 to 23 (default 17)")
    p.add_argument("--tensorrt", action="store_true",
                   help="also build a TensorRT engine (fp16 only; needs TensorRT + GPU)")
    p.add_argument("--min-batch", type=positive_int, default=_TENSORRT_ONLY["min_batch"],
                   help="TensorRT profile: smallest view batch (default 1)")
    p.add_argument("--opt-batch", type=positive_int, default=_TENSORRT_ONLY["opt_batch"],
                   help="TensorRT profile: tuned view batch (default 9); Triton: preferred encoder batch")
    p.add_argument("--max-batch", type=positive_int, default=_TENSORRT_ONLY["max_batch"],
                   help="TensorRT profile: largest view batch (default 18); Triton: the encoder max_batch_size "
                        "(a TensorRT engine brings its own)")
    p.add_argument("--workspace-gb", type=positive_float, default=_TENSORRT_ONLY["workspace_gb"],
                   help="TensorRT builder workspace in GiB (default 4)")
    add_triton_options(p)
    p.set_defaults(func=run_export)



# TensorRT profile options and their defaults (--opt/--max-batch also shape a Triton repository).
_TENSORRT_ONLY = {"min_batch": 1, "opt_batch": 9, "max_batch": 18, "workspace_gb": 4.0}


def check_used_options(args: argparse.Namespace) -> None:
    """Refuse (one line) options this export would ignore: --format triton ones, TensorRT ones without --tensorrt."""
    from align3d_rt.cli.export_triton import unused_triton_options

    needs = {opt: f"--format {TRITON}" for opt in unused_triton_options(args)}
    if not args.tensorrt:
        needs |= {"--" + k.replace("_", "-"): "--tensorrt" for k, default in _TENSORRT_ONLY.items()
                  if getattr(args, k) != default}
    if needs:
        opts, it = ", ".join(needs), "it" if len(needs) == 1 else "them"
        raise Align3DError(f"{opts}: read only with {' or '.join(sorted(set(needs.values())))}; this export "
                           f"(--format {args.fmt}) would ignore {it}: leave {it} out")


def run_export(args: argparse.Namespace) -> int:
    from align3d_rt.artifacts.bundle_target import check_export_target

    if args.fmt == TRITON:
        return run_triton_export(args)
    if args.run is None:
        raise Align3DError(f"--bundle is the source of --format {TRITON}; "
                           "export a bundle from a training run with --run")
    check_used_options(args)
    if args.precision is None:  # each format's measured default
        args.precision = DEFAULT_IR_PRECISION if args.fmt == EXPORT_FORMATS[1] else "fp32"
    from align3d_rt.export.onnx_export import check_opset, export_bundle

    check_opset(args.opset)
    check_export_target(args.run, args.out, args.overwrite)  # before any work; never deletes
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
    if args.tensorrt and args.fmt != EXPORT_FORMATS[0]:
        raise Align3DError(f"--tensorrt builds from the ONNX fp16 graph; leave out --format {args.fmt}")
    if args.calibration_samples is not None and not (args.fmt != EXPORT_FORMATS[0] and args.precision == "int8"):
        raise Align3DError(f"--calibration-samples applies to --format {EXPORT_FORMATS[1]} --precision int8 only")
    try:
        out = export_bundle(args.run, args.out, precision=args.precision, opset=args.opset, fmt=args.fmt,
                            calibration_samples=args.calibration_samples, clip_weights=args.clip_weights)
    except OSError as err:  # e.g. the disk filled up inside a writer that does not name its file
        if err.filename is not None or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(args.out)) from err
    what = f"{args.precision} bundle" if args.fmt == EXPORT_FORMATS[0] else f"{args.fmt} {args.precision} bundle"
    print(f"align3d-rt export: wrote {what} {out}", file=sys.stderr)
    if args.tensorrt:
        from align3d_rt.export.tensorrt_build import build_engine

        engine = build_engine(out, min_batch=args.min_batch, opt_batch=args.opt_batch, max_batch=args.max_batch,
                              workspace_gb=args.workspace_gb)
        print(f"align3d-rt export: built TensorRT engine {engine}", file=sys.stderr)
    return 0
