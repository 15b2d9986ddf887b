"""Parity of an exported bundle against the torch reference of the run it came from.

Both sides run the full pipeline (render -> encode -> back-project -> score) on the same samples via
``Detector.from_run(run)`` (the torch reference) and ``Detector.from_bundle(bundle, backend=...)``. Reported:
max abs difference of per-view maps (and global probabilities), per-point scores and object scores;
object AUROC and point AUROC of both sides and their difference when labels exist.

Thresholds (documented; ``parity`` exits 1 when one is exceeded):
- fp32: every max abs difference <= 1e-4 (and the AUROC differences, when computed, <= 1e-4);
- fp16, int8 (and OpenVINO's int8-weights, or an fp32 IR computed in bf16: precision 'fp32/bf16'):
  |AUROC difference| <= 0.005 (0.5 AUROC points) for object and point AUROC. Without labels no
  AUROC exists; the report then says the AUROC check was not possible (``checked: false``).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from align3d_rt.runtime.detector_info import DetectorInfo

FP32_MAX_ABS = 1e-4
AUROC_TOL = 0.005
THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"max_abs": FP32_MAX_ABS, "auroc": FP32_MAX_ABS},
    "fp16": {"auroc": AUROC_TOL},
    "int8": {"auroc": AUROC_TOL},
    "int8-weights": {"auroc": AUROC_TOL},
    "fp32/bf16": {"auroc": AUROC_TOL},
}


def auroc_standard_error(auroc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUROC measured on ``n_pos`` positives and ``n_neg`` negatives.

    SE = sqrt((A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)) / (n_pos n_neg)), Q1 = A/(2-A), Q2 = 2A^2/(1+A).
    It treats the items as independent: for points (neighbours share a patch) it is a lower bound.
    A parity set resolves the AUROC tolerance only when its AUROC is above chance by several SE
    (runtime-spec 10.3)."""
    if n_pos < 1 or n_neg < 1 or not 0.0 <= auroc <= 1.0:
        raise ValueError(f"AUROC standard error needs 0 <= A <= 1 and both classes (A={auroc}, {n_pos}+, {n_neg}-)")
    a = float(auroc)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1.0 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (float(n_pos) * n_neg)
    return math.sqrt(max(var, 0.0))


def parity_precision(bundle_precision: str, detector_info: Mapping[str, Any] | DetectorInfo) -> str:
    """The precision whose thresholds apply: what the backend ran (its IR precision, bf16 compute)."""
    precision = str(detector_info.get("precision") or bundle_precision)
    if precision == "fp32" and detector_info.get("compute_precision") in ("bf16", "f16"):
        return f"fp32/{detector_info['compute_precision']}"
    return precision


@dataclass
class ParityReport:
    """What ``compare`` found; ``passed`` applies the thresholds of ``precision``."""

    precision: str
    num_samples: int
    num_views: int
    max_abs: dict[str, float]
    auroc: dict[str, dict[str, float | None]]
    thresholds: dict[str, float]
    checked: bool
    passed: bool
    failures: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _auroc_pair(labels: Any, ref: Any, test: Any, fn: Any) -> dict[str, float | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = float(fn(labels, ref)), float(fn(labels, test))
    if not (math.isfinite(a) and math.isfinite(b)):
        return {"reference": None, "bundle": None, "diff": None}
    return {"reference": a, "bundle": b, "diff": b - a}


def compare(samples: Sequence[Any], reference: Sequence[Any], test: Sequence[Any], precision: str,
            info: dict[str, Any] | None = None) -> ParityReport:
    """Compare two lists of ScoreResult for the same samples (reference = torch)."""
    from align3d_rt.eval.metrics import object_auroc, point_auroc

    if not (len(samples) == len(reference) == len(test)) or not samples:
        raise ValueError("compare needs the same non-zero number of samples and results on both sides")
    diff = {"view_maps": 0.0, "global_probs": 0.0, "point_scores": 0.0, "object_scores": 0.0}
    for r, t in zip(reference, test, strict=True):
        diff["view_maps"] = max(diff["view_maps"],
                            float(np.abs(np.asarray(r.view_maps) - np.asarray(t.view_maps)).max()))
        diff["global_probs"] = max(diff["global_probs"],
                               float(np.abs(np.asarray(r.global_probs) - np.asarray(t.global_probs)).max()))
        diff["point_scores"] = max(diff["point_scores"],
                            float(np.abs(np.asarray(r.point_scores) - np.asarray(t.point_scores)).max()))
        diff["object_scores"] = max(diff["object_scores"], abs(float(r.object_score) - float(t.object_score)))

    auroc: dict[str, dict[str, float | None]] = {}
    obj_labels = [s.is_anomalous for s in samples]
    if all(lbl is not None for lbl in obj_labels):
        auroc["object"] = _auroc_pair(np.asarray(obj_labels, dtype=np.int64), [r.object_score for r in reference],
                                      [t.object_score for t in test], object_auroc)
    if all(s.point_labels is not None for s in samples):
        labels = [np.asarray(s.point_labels) for s in samples]
        auroc["point"] = _auroc_pair(labels, [np.asarray(r.fused) for r in reference],
                                     [np.asarray(t.fused) for t in test], point_auroc)

    limits = THRESHOLDS.get(precision, THRESHOLDS["fp16"])
    failures = []
    if "max_abs" in limits:
        failures += [f"{k} max abs diff {v:.3g} > {limits['max_abs']:g}" for k, v in diff.items()
                     if v > limits["max_abs"]]
    computed = {k: v for k, v in auroc.items() if v["diff"] is not None}
    failures += [f"{k} AUROC diff {d:+.4f} exceeds {limits['auroc']:g}" for k, v in computed.items()
                 if (d := v["diff"]) is not None and abs(float(d)) > limits["auroc"]]
    checked = bool(computed) or "max_abs" in limits
    return ParityReport(
        precision=precision,
        num_samples=len(samples),
        num_views=int(np.asarray(reference[0].view_maps).shape[0]),
        max_abs=diff,
        auroc=auroc,
        thresholds=dict(limits),
        checked=checked,
        passed=not failures,
        failures=failures,
        info=dict(info or {}),
    )


def score_all(detector: Any, samples: list[Any], batch_size: int) -> list[Any]:
    """Every sample's ScoreResult, through the pipelined Detector; a sample that cannot be scored raises."""
    out: list[Any] = []
    with detector:
        for _, result in detector.score_stream(samples, batch_size=batch_size):
            if isinstance(result, Exception):
                raise result
            out.append(result)
    return out


def run_parity(run_dir: str | Path, bundle_dir: str | Path, samples: list[Any], backend: str | None = None,
               batch_size: int = 2, device: str = "auto", **runner_options: Any) -> ParityReport:
    """Score ``samples`` with the run (torch) and the bundle (``backend``, ``runner_options``) and compare."""
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.runtime.detector import Detector

    bundle = load_bundle(bundle_dir, verify=False)  # Detector.from_bundle verifies the hashes
    ref_det = Detector.from_run(run_dir, device=device)  # the run's default backend: the torch reference
    test_det = Detector.from_bundle(bundle_dir, backend=backend, device=device, **runner_options)
    reference = score_all(ref_det, samples, batch_size)
    test = score_all(test_det, samples, batch_size)
    info = {
        "run": str(Path(run_dir).resolve()),
        "bundle": str(Path(bundle_dir).resolve()),
        "backend": test_det.backend_name,
        "device": test_det.device,
        "samples": [s.sample_id for s in samples],
        "onnx_sha256": bundle.onnx_sha256,
    }
    for key in ("compute_precision", "openvino_device"):
        if key in test_det.info:
            info[key] = test_det.info[key]
    return compare(samples, reference, test, parity_precision(bundle.precision, test_det.info), info)
