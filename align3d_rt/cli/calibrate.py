"""``align3d-rt calibrate``: fit a product's decision thresholds on known-good parts (docs/runtime-spec.md 13).

Scores the --good parts (and optional --bad parts) with a bundle or a run, fits an object threshold
and a point threshold, and writes one hash-protected JSON calibration file (--out) tied to that
bundle (its manifest_sha256) or run. `align3d-rt infer --calibration CAL` then adds a decision
(ok/reject), normalised scores and defect regions to every part.

Default rule: conformal at --target-false-reject 0.05 (needs >= 19 good parts): a new good part is
rejected with probability <= 0.05. Files that cannot be read are listed (one line each) and the
others used; exit 1 then (the calibration is written), 2 when nothing is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts.calibration import (
    DEFAULT_MIN_POINTS,
    DEFAULT_SPACING_FACTOR,
    RULES,
    check_target,
    save_calibration,
    scoring_name,
)
from align3d_rt.cli.infer import sample_loader
from align3d_rt.cli.numbers import positive_int
from align3d_rt.cli.options import add_detector_options, build_detector
from align3d_rt.cli.scoring_options import add_scoring_options, apply_scoring
from align3d_rt.data.files import collect_files
from align3d_rt.errors import Align3DError, InputError
from align3d_rt.render.views import DATASET_CATEGORIES, category_problem

PRODUCT_MAX_CHARS = 200  # the name appears in one-line messages, scores.json and Triton parameters


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="fit a product's ok/reject thresholds on known-good parts (writes a calibration file)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_detector_options(p, required=True)
    add_scoring_options(p)
    p.add_argument("--good", type=Path, nargs="+", required=True, metavar="PATH",
                   help="known-good parts: point-cloud files or folders of them")
    p.add_argument("--bad", type=Path, nargs="+", default=None, metavar="PATH",
                   help="known-bad parts (optional; needed by --rule f1 and false-accept, recorded otherwise)")
    p.add_argument("--product", required=True, help="product name recorded in the calibration")
    p.add_argument("--out", type=Path, required=True, help="calibration file to write (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing calibration file at --out "
                                                            "(never any other file)")
    p.add_argument("--dataset", default="", choices=tuple(DATASET_CATEGORIES),
                   help="dataset the files come from (render point size/normals)")
    p.add_argument("--category", default="", help="category of the files (MVTec point size per class); needs "
                   "--dataset and one of its categories")
    p.add_argument("--rule", choices=RULES, default="conformal",
                   help="conformal (default; false-reject rate <= target on average), pac (<= target with "
                        "--confidence), f1 (needs --bad), false-accept (needs --bad and --target-false-accept)")
    p.add_argument("--target-false-reject", type=float, default=0.05,
                   help="α: the tolerated rate of good parts rejected (default 0.05)")
    p.add_argument("--confidence", type=float, default=None, help="--rule pac: confidence c (default 0.9)")
    p.add_argument("--target-false-accept", type=float, default=None,
                   help="--rule false-accept: β, the tolerated share of bad parts accepted")
    p.add_argument("--min-region-points", type=int, default=DEFAULT_MIN_POINTS,
                   help=f"smallest defect region kept, in points (default {DEFAULT_MIN_POINTS})")
    p.add_argument("--region-spacing-factor", type=float, default=DEFAULT_SPACING_FACTOR,
                   help=f"hot points closer than this many point spacings join one region "
                        f"(default {DEFAULT_SPACING_FACTOR})")
    p.add_argument("--batch-size", type=positive_int, default=1, help="samples scored per encoder batch (default 1)")
    p.set_defaults(func=run_calibrate)


def _score_all(detector: Any, files: list[tuple[Path, str]], args: argparse.Namespace, what: str,
               keep_points: bool) -> tuple[list[float], list[np.ndarray], int]:
    """Object scores (and fused point scores) of the parts that scored; the others listed on stderr."""
    from align3d_rt import progress

    objects: list[float] = []
    points: list[np.ndarray] = []
    failed = 0
    if not files:
        return objects, points, failed
    with progress.bar(total=len(files), desc=f"calibrate {what}", unit="part", file=sys.stderr,
                      dynamic_ncols=True) as bar:
        stream = detector.score_stream(files, load=sample_loader(args.dataset, args.category),
                                       batch_size=args.batch_size, keep_render=False)
        for (path, _key), result in stream:
            bar.update(1)
            if not isinstance(result, InputError) and not (
                    np.isfinite(result.object_score) and np.isfinite(result.fused).all()):
                result = InputError(f"{path}: score is not finite; part not used")
            if isinstance(result, InputError):
                failed += 1
                msg = str(result) if str(result).startswith(str(path)) else f"{path}: {result}"
                progress.write(f"align3d-rt calibrate: skipped {what} part {msg}", file=sys.stderr)
                continue
            objects.append(float(result.object_score))
            if keep_points:
                points.append(np.asarray(result.fused, dtype=np.float32).copy())
    return objects, points, failed


def run_calibrate(args: argparse.Namespace) -> int:
    from align3d_rt.eval.calibration import check_settings, fit_calibration, good_parts_needed, guarantee_line

    check_target(args.out, args.overwrite)  # before any work
    if (problem := category_problem(args.dataset, args.category)) is not None:  # the names infer accepts
        raise Align3DError(problem)
    if not args.product.strip():
        raise Align3DError("--product: needs a non-empty product name")
    if not args.product.isprintable() or len(args.product) > PRODUCT_MAX_CHARS:
        raise Align3DError(f"--product {args.product[:40]!r}: a product name is one line of printable characters, "
                           f"at most {PRODUCT_MAX_CHARS}")
    bad_files = collect_files(list(args.bad)) if args.bad else []
    check_settings(args.rule, args.target_false_reject, args.confidence, args.target_false_accept,
                   len(bad_files), args.min_region_points, args.region_spacing_factor)
    good_files = collect_files(list(args.good))
    needed = good_parts_needed(args.rule, args.target_false_reject, args.confidence)
    if len(good_files) < needed:
        raise Align3DError(f"--good: {len(good_files)} good part file(s); --rule {args.rule} at "
                           f"--target-false-reject {args.target_false_reject} needs at least {needed} good parts")
    detector = apply_scoring(args, build_detector(args))
    source = detector.calibration_source()
    with detector:
        good, good_points, good_failed = _score_all(detector, good_files, args, "good", keep_points=True)
        bad, _, bad_failed = _score_all(detector, bad_files, args, "bad", keep_points=False)
    cal = fit_calibration(
        good, good_points, product=args.product, source=source, scoring=scoring_name(detector.reference_scoring),
        dataset=args.dataset, category=args.category, bad_object_scores=bad if bad_files else None,
        rule=args.rule, target_false_reject=args.target_false_reject, confidence=args.confidence,
        target_false_accept=args.target_false_accept, min_points=args.min_region_points,
        spacing_factor=args.region_spacing_factor,
    )
    save_calibration(cal, args.out, overwrite=args.overwrite)
    o, p = cal.object, cal.point
    skipped = f" ({good_failed} skipped)" if good_failed else ""
    print(f"align3d-rt calibrate: product {cal.product}: {cal.n_good} good part(s){skipped}, {cal.n_bad} bad, "
          f"rule {args.rule} (target false-reject {args.target_false_reject})")
    rank = f" = x_({o.rank}) of {cal.n_good}" if o.rank is not None else ""
    print(f"  object threshold {o.threshold:.6g}{rank}; good object scores span [{o.lo:.6g}, {o.hi:.6g}]")
    print(f"  point threshold {p.threshold:.6g} = x_({p.rank}) of the parts' max point scores; "
          f"regions: >= {cal.min_points} points within {cal.spacing_factor:g} x spacing")
    if bad:
        caught = sum(b > o.threshold for b in bad)
        print(f"  bad parts rejected at this threshold: {caught} of {len(bad)}")
    print(f"  guarantee: {guarantee_line(cal)}")
    print(f"  -> {args.out}")
    return 1 if good_failed or bad_failed else 0
