"""``infer --calibration CAL``: load and check the calibration, and write its per-part outputs
(docs/runtime-spec.md 13.5): KEY.normalized.npy, KEY.regions.npy and the scores.json fields."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.errors import Align3DError
from align3d_rt.io_utils import save_npy_atomic


def add_calibration_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", type=Path, default=None, metavar="CAL",
                        help="calibration file (align3d-rt calibrate) for this bundle/run: adds a decision "
                             "(ok/reject), normalised scores and defect regions per part; its dataset and "
                             "category become the defaults")


def resolve_calibration(args: argparse.Namespace) -> Any:
    """Load --calibration (one-line refusals) and settle --dataset/--category: the calibration's
    values are the defaults and a different value is refused. Returns the Calibration or None."""
    path = getattr(args, "calibration", None)
    if path is None:
        args.dataset = args.dataset or ""
        args.category = args.category or ""
        return None
    from align3d_rt.artifacts.calibration import load_calibration

    if getattr(args, "triton", None):
        raise Align3DError(f"--calibration {path}: with --triton the served repository carries the calibration "
                           f"(export --format triton --calibration CAL); leave --calibration out")
    cal = load_calibration(path)
    for flag, key in (("--dataset", "dataset"), ("--category", "category")):
        given, recorded = getattr(args, key), getattr(cal, key)
        if given is not None and given != recorded:
            raise Align3DError(f"{path}: calibration was made with {flag} {recorded!r}; {flag} {given!r} differs "
                               f"(leave {flag} out to use the calibration's)")
        setattr(args, key, recorded)
    return cal


def attach(detector: Any, cal: Any, path: Path) -> Any:
    """The detector with the calibration attached (checked against its bundle/run)."""
    detector.calibrate_with(cal, path=path)
    detector.check_calibration_scoring()  # --scoring is applied by now: refuse before any output
    return detector


def summary_field(cal: Any, path: Path) -> dict[str, Any]:
    """scores.json's top-level ``calibration``."""
    return {"product": cal.product, "calibration_sha256": cal.sha256, "rule": dict(cal.rule),
            "object_threshold": cal.object.threshold, "point_threshold": cal.point.threshold, "file": str(path)}


def write_decision(out: Path, key: str, decision: Any, written: dict[str, str], entry: dict[str, Any]) -> None:
    """KEY.normalized.npy (<f4), KEY.regions.npy (<i4) and the per-sample fields of 13.5."""
    written["normalized"] = f"{key}.normalized.npy"
    written["regions"] = f"{key}.regions.npy"
    save_npy_atomic(out / written["normalized"], np.asarray(decision.normalized, dtype="<f4"))
    save_npy_atomic(out / written["regions"], np.asarray(decision.regions.labels, dtype="<i4"))
    entry.update(decision.to_json())
