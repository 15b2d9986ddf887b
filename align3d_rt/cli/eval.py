"""``align3d-rt eval``: the one-vs-rest / cross-dataset protocols over a run or a bundle."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align3d_rt.cli.numbers import non_negative_int, positive_int
from align3d_rt.cli.options import add_detector_options, build_detector
from align3d_rt.cli.scoring_options import add_scoring_options, apply_scoring
from align3d_rt.errors import Align3DError

DATASETS = ("mvtec3d", "eyecandies", "real3d", "synthetic")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a run or bundle with the one-vs-rest or cross-dataset protocol",
        description="Score the test split of every test class and write per-class tables (results.md/.csv/.json), "
                    "example pictures and manifest.json, rewritten as each class finishes. one-vs-rest leaves out "
                    "the run's training class; cross-dataset tests every class of another dataset root. A sample "
                    "that cannot be scored is listed as failed and the evaluation goes on (exit code 1). "
                    "Under `torchrun --nproc-per-node N -m align3d_rt eval ...` every rank scores its share of "
                    "each class and rank 0 merges the scores and writes the outputs.",
    )
    p.add_argument("--protocol", choices=("one-vs-rest", "cross-dataset"), default="one-vs-rest")
    p.add_argument("--dataset", choices=DATASETS, required=True, help="dataset layout of --root")
    p.add_argument("--root", type=Path, required=True, help="dataset root folder")
    add_detector_options(p)
    add_scoring_options(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty; locked while written)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier eval output at --out: only the files it wrote "
                        "(a folder holding anything else is refused)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted eval in --out: classes whose results are there are not rescored")
    p.add_argument("--categories", nargs="+", default=None, help="test only these classes")
    p.add_argument("--batch-size", type=positive_int, default=2, help="samples scored per encoder batch")
    p.add_argument("--examples", type=non_negative_int, default=1, help="good and anomalous example pictures per class")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibration", type=Path, default=None, metavar="CAL",
                     help="a calibration file of this run/bundle (align3d-rt calibrate): its thresholds apply to "
                          "every test class; adds the operating-point table (false reject/accept, F1, regions)")
    cal.add_argument("--calibrate-on", choices=("train", "validation"), default=None, metavar="SPLIT",
                     help="per test class, fit a calibration on its good parts of SPLIT (train or validation) with "
                          "the default rule (conformal), save it under results_calibrations/, then evaluate the "
                          "test split at it (operating-point table)")
    p.add_argument("--target-false-reject", type=float, default=None, metavar="ALPHA",
                   help="--calibrate-on: the rule's target false-reject rate (default 0.05)")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from align3d_rt import distributed

    with distributed.session(args.device) as rank:  # torchrun: each rank scores a shard, rank 0 writes
        return _run_eval(args, rank.is_main)


def _check_choices(args: argparse.Namespace) -> None:
    """One-line refusals of --categories given twice and of --target-false-reject (checked before scoring)."""
    from align3d_rt.eval.calibration import check_settings

    repeated = sorted({c for c in args.categories or [] if args.categories.count(c) > 1})
    if repeated:
        raise Align3DError(f"--categories: {', '.join(repeated)} given more than once (each class is evaluated once)")
    if args.target_false_reject is not None:
        if args.calibrate_on is None:
            raise Align3DError("--target-false-reject needs --calibrate-on (a calibration file has its own target)")
        check_settings("conformal", args.target_false_reject, None, None, 0)


def _run_eval(args: argparse.Namespace, main: bool) -> int:
    import contextlib

    from align3d_rt import distributed
    from align3d_rt.cli.out_folder import OutputFolder
    from align3d_rt.eval.protocols import run_protocol
    from align3d_rt.eval.report import markdown_table, operating_section

    if args.overwrite and args.resume:
        raise Align3DError("--overwrite and --resume: choose one (replace the folder, or continue in it)")
    folder = OutputFolder(args.out, "eval", overwrite=args.overwrite, resume=args.resume,
                          inputs=(getattr(args, "bundle", None),))
    folder.check()  # before any work
    if not args.root.is_dir():
        raise Align3DError(f"{args.root}: dataset root {'is not a folder' if args.root.exists() else 'not found'}")
    _check_choices(args)  # before any work
    detector = apply_scoring(args, build_detector(args))
    calibration = _load_calibration(args, detector) if args.calibration is not None else None
    distributed.barrier()  # every rank has checked --out before rank 0 locks (and maybe empties) it
    with folder if main else contextlib.nullcontext():
        outcome = run_protocol(detector, args.protocol, args.dataset, args.root, args.out, categories=args.categories,
                               batch_size=args.batch_size, n_examples=args.examples, resume=args.resume,
                               calibration=calibration, calibrate_on=args.calibrate_on,
                               target_false_reject=args.target_false_reject)
    n_failed = sum(len(r.failed) for r in outcome.results)
    if not main:
        return 1 if n_failed else 0
    if outcome.excluded:
        print(f"align3d-rt eval: training class {outcome.excluded!r} left out (one-vs-rest)", file=sys.stderr)
    print(markdown_table(outcome.results) + operating_section(outcome.results))
    if n_failed:
        print(f"align3d-rt eval: {n_failed} sample(s) could not be scored and are left out of the metrics "
              f"(listed in results.md and manifest.json)", file=sys.stderr)
    print(f"align3d-rt eval: tables, pictures and manifest in {args.out}", file=sys.stderr)
    return 1 if n_failed else 0


def _load_calibration(args: argparse.Namespace, detector: object) -> object:
    """The --calibration file, refused (one line) when it was made for another run or bundle or with
    another scoring mode."""
    from align3d_rt.artifacts.calibration import check_source, load_calibration, scoring_name

    cal = load_calibration(args.calibration)
    check_source(cal, detector.calibration_source(), args.calibration)  # type: ignore[attr-defined]
    mine = scoring_name(detector.reference_scoring)  # type: ignore[attr-defined]
    if cal.scoring != mine:
        raise Align3DError(f"{args.calibration}: calibration was made with {cal.scoring} scoring, this evaluation "
                           f"uses {mine}; evaluate with the same --scoring or calibrate again")
    return cal
