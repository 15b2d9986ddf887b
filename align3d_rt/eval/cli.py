"""``align3d-rt eval`` (one-vs-rest / cross-dataset protocols) and ``align3d-rt demo`` (offline end-to-end run)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align3d_rt.errors import Align3DError

DATASETS = ("mvtec3d", "eyecandies", "real3d", "synthetic")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a run or bundle with the one-vs-rest or cross-dataset protocol",
        description="Score the test split of every test class and write per-class tables (results.md/.csv/.json), "
                    "example pictures and manifest.json. one-vs-rest leaves out the run's training class; "
                    "cross-dataset tests every class of another dataset root.",
    )
    p.add_argument("--protocol", choices=("one-vs-rest", "cross-dataset"), default="one-vs-rest")
    p.add_argument("--dataset", choices=DATASETS, required=True, help="dataset layout of --root")
    p.add_argument("--root", type=Path, required=True, help="dataset root folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="training run directory (torch backend)")
    src.add_argument("--bundle", type=Path, help="exported bundle directory (onnxruntime / tensorrt)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default=None,
                   help="default: torch for --run, onnxruntime for --bundle")
    p.add_argument("--device", default="cpu", help="torch device for --run (default cpu)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--categories", nargs="+", default=None, help="test only these classes")
    p.add_argument("--batch-size", type=int, default=2, help="samples scored per encoder batch")
    p.add_argument("--examples", type=int, default=1, help="good and anomalous example pictures per class")
    p.set_defaults(func=run_eval)

    d = subparsers.add_parser(
        "demo",
        help="offline end-to-end demo: synthetic data, tiny CLIP, train, evaluate (torch + ONNX Runtime), report",
        description="Generates a synthetic MVTec-layout dataset, trains both stages on one category with the tiny "
                    "random CLIP ('align3d-tiny'), evaluates one-vs-rest on the other categories with the torch "
                    "backend, exports ONNX bundles and evaluates them with ONNX Runtime, and writes OUT/report.md.",
    )
    d.add_argument("--out", type=Path, required=True, help="output folder (dataset, run, bundles, report)")
    d.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "int8"), default=["fp32", "int8"],
                   help="bundle precisions to export and evaluate with ONNX Runtime (default fp32 int8)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="smaller dataset and fewer epochs (a smoke run, not a result)")
    d.set_defaults(func=run_demo)


def _detector(args: argparse.Namespace):  # -> Detector
    from align3d_rt.infer.pipeline import Detector

    if args.run is not None:
        return Detector.from_run(args.run, backend=args.backend or "torch", device=args.device)
    return Detector.from_bundle(args.bundle, backend=args.backend or "onnxruntime")


def run_eval(args: argparse.Namespace) -> int:
    from align3d_rt.eval.protocols import run_protocol
    from align3d_rt.eval.report import markdown_table

    if not args.root.is_dir():
        raise Align3DError(f"{args.root}: dataset root not found")
    detector = _detector(args)
    outcome = run_protocol(detector, args.protocol, args.dataset, args.root, args.out, categories=args.categories,
                           batch_size=args.batch_size, n_examples=args.examples)
    if outcome.excluded:
        print(f"align3d-rt eval: training class {outcome.excluded!r} left out (one-vs-rest)", file=sys.stderr)
    print(markdown_table(outcome.results))
    print(f"align3d-rt eval: tables, pictures and manifest in {args.out}", file=sys.stderr)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from align3d_rt.demo import DemoConfig, run_demo as demo

    cfg = DemoConfig(out=args.out, precisions=tuple(args.precisions), seed=args.seed)
    if args.quick:
        cfg = cfg.quick()
    report = demo(cfg)
    print(f"align3d-rt demo: report written to {report}", file=sys.stderr)
    return 0
