"""``align3d-rt export --format triton``: the options and the command's Triton branch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align3d_rt.cli.numbers import non_negative_int, positive_int
from align3d_rt.errors import Align3DError

TRITON = "triton"
# Options only --format triton reads, with their defaults (filled by add_triton_options).
TRITON_ONLY_DEFAULTS: dict[str, object] = {}


def add_triton_options(p: argparse.ArgumentParser) -> None:
    from align3d_rt.artifacts.triton_layout import DEFAULT_MODEL
    from align3d_rt.serving.triton_config import PYTHON
    from align3d_rt.serving.triton_repository import AUTO, ENCODER_CHOICES

    g = p.add_argument_group("--format triton")
    g.add_argument("--triton-encoder", choices=ENCODER_CHOICES, default=AUTO,
                   help=f"how the encoder is served: {AUTO} (default) = Triton's backend for the bundle's engine "
                        f"(OpenVINO IR, else TensorRT engine, else the ONNX graph); {PYTHON}: a Python-backend "
                        f"model running ONNX Runtime on the ONNX graph (for servers with only the Python backend, "
                        f"e.g. the one nvidia-pytriton bundles)")
    g.add_argument("--triton-name", default=DEFAULT_MODEL,
                   help=f"pipeline model name (default {DEFAULT_MODEL}; the encoder is NAME_encoder)")
    g.add_argument("--triton-instances", type=positive_int, default=1, help="encoder model instances (default 1)")
    g.add_argument("--triton-pipeline-instances", type=positive_int, default=2,
                   help="pipeline model instances (default 2: one renders while another waits on the encoder)")
    g.add_argument("--triton-queue-delay-us", type=non_negative_int, default=2000,
                   help="encoder dynamic batching: longest wait for more requests, microseconds (default 2000)")
    g.add_argument("--triton-gpu", action="store_true", help="encoder instances on the GPU (always for TensorRT)")
    g.add_argument("--triton-threads", type=non_negative_int, default=0,
                   help="encoder threads per instance: ONNX Runtime's for the python encoder, OpenVINO's "
                        "INFERENCE_NUM_THREADS for the openvino encoder (default 0 = the runtime's choice)")
    g.add_argument("--calibration", type=Path, default=None, metavar="CAL",
                   help="a calibration file of this bundle (align3d-rt calibrate): copied into the repository; the "
                        "pipeline then also returns 'decision' (JSON), 'point_scores_normalized' and 'region_labels'")
    g.add_argument("--triton-engine-key", default=None,
                   help="TensorRT: the bundle's engine to serve when it holds several")
    TRITON_ONLY_DEFAULTS.update({a.dest: a.default for a in g._group_actions})


def unused_triton_options(args: argparse.Namespace) -> list[str]:
    """The --format triton options given (not at their default) to another --format: never silently ignored."""
    return ["--" + dest.replace("_", "-") for dest, default in TRITON_ONLY_DEFAULTS.items()
            if getattr(args, dest, default) != default]


def run_triton_export(args: argparse.Namespace) -> int:
    from align3d_rt.serving.triton_repository import write_triton_repository

    if args.bundle is None:
        raise Align3DError(f"--format {TRITON} serves an exported bundle: "
                           "pass --bundle (export one from the run first)")
    if args.tensorrt or args.precision not in (None, "fp32") or args.calibration_samples is not None:
        raise Align3DError(f"--format {TRITON} copies the bundle as it is; --tensorrt/--precision/"
                           f"--calibration-samples apply when the bundle is exported")
    out = write_triton_repository(
        args.bundle, args.out, encoder=args.triton_encoder, name=args.triton_name, max_batch=args.max_batch,
        opt_batch=args.opt_batch, max_queue_delay_us=args.triton_queue_delay_us,
        encoder_instances=args.triton_instances, pipeline_instances=args.triton_pipeline_instances,
        gpu=args.triton_gpu, threads=args.triton_threads, engine_key=args.triton_engine_key,
        overwrite=args.overwrite, calibration=args.calibration)
    print(f"align3d-rt export: wrote Triton model repository {out} (start: tritonserver --model-repository {out}; "
          f"see {out}/README.md)", file=sys.stderr)
    return 0
