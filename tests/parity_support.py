"""The signal fixture for backend parity tests: a tiny-CLIP run trained on generated clouds with planted
defects, so its point scores rank defects above chance and an AUROC difference measures the backend,
not noise. Built once per test process (train ~20 s on 2 CPUs), with its bundles built on first use.

Why: on a random (untrained) run the point AUROC is ~0.47, its ranking is noise, and any perturbation
of the maps (fp16, int8, bf16) moves it by about 0.01 whatever the backend's quality (issue #21).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.eval.parity import AUROC_TOL, auroc_standard_error

SIGNAL_SE = 3.0  # the fixture's point AUROC must exceed chance by this many standard errors

CATEGORY = "dome"
DEFECTS = ["bump", "hole"]
SIZE = (120, 120)
TRAIN = dict(clip="align3d-tiny", epochs1=1, reweight_epochs=1, epochs2=3, dpca_epochs=1, max_samples=4,
             device="cpu", progress=False)

_CACHE: dict[str, Any] = {}


def signal_data(tmp_root: Path) -> Path:
    """Generated dome clouds: 2 good + 2 per defect kind, test split only (~18k points each)."""
    if "root" not in _CACHE:
        from align3d_rt.data.synthetic import generate_mvtec_layout

        _CACHE["root"] = generate_mvtec_layout(tmp_root / "signal_data", categories=[CATEGORY], n_train=0,
                                               n_validation=0, n_test_good=2, n_per_defect=2, defects=DEFECTS,
                                               size=SIZE, seed=0)
    return Path(_CACHE["root"])


def signal_run(tmp_root: Path) -> Path:
    """The trained tiny run (seed 0, 4 of the 6 clouds, 1 + 3 epochs)."""
    if "run" not in _CACHE:
        from align3d_rt.train.runner import TrainConfig, train_run

        cfg = TrainConfig(dataset="synthetic", root=signal_data(tmp_root), category=CATEGORY,
                          out=tmp_root / "signal_run", **TRAIN)  # type: ignore[arg-type]
        start = time.perf_counter()
        _CACHE["run"] = train_run(cfg)
        _CACHE["train_seconds"] = time.perf_counter() - start
    return Path(_CACHE["run"])


def signal_samples(tmp_root: Path) -> list[Any]:
    """All 6 labelled clouds of the signal data (the parity test set)."""
    if "samples" not in _CACHE:
        from align3d_rt.cli.parity import load_data

        _CACHE["samples"] = load_data([signal_data(tmp_root)], dataset="synthetic", categories=[CATEGORY])
    return list(_CACHE["samples"])


def signal_bundle(tmp_root: Path, precision: str, fmt: str = "onnx") -> Path:
    """A bundle of the signal run (exported on first use)."""
    key = f"bundle_{fmt}_{precision}"
    if key not in _CACHE:
        from align3d_rt.export.onnx_export import export_bundle

        _CACHE[key] = export_bundle(signal_run(tmp_root), tmp_root / f"signal_{fmt}_{precision}",
                                    precision=precision, fmt=fmt)
    return Path(_CACHE[key])


def signal_reference(tmp_root: Path) -> list[Any]:
    """The torch reference's ScoreResults of the signal samples (the run's default backend)."""
    if "reference" not in _CACHE:
        from align3d_rt.eval.parity import score_all
        from align3d_rt.runtime.detector import Detector

        _CACHE["reference"] = score_all(Detector.from_run(signal_run(tmp_root)), signal_samples(tmp_root), 4)
    return list(_CACHE["reference"])


@dataclass(frozen=True)
class SignalStats:
    """How much the fixture's torch reference ranks defects: AUROCs, class sizes, Hanley-McNeil SE."""

    point_auroc: float
    n_pos: int
    n_neg: int
    point_se: float
    object_auroc: float
    objects_pos: int
    objects_neg: int
    object_margin: float  # smallest |score(defective) - score(good)| over object pairs
    train_seconds: float

    @property
    def point_margin_in_se(self) -> float:
        return (self.point_auroc - 0.5) / self.point_se

    def line(self) -> str:
        return (f"signal fixture: point AUROC {self.point_auroc:.4f} (SE {self.point_se:.4f} from "
                f"{self.n_pos}+/{self.n_neg}- points, {self.point_margin_in_se:.0f} SE above chance), "
                f"object AUROC {self.object_auroc:.3f} ({self.objects_pos}+/{self.objects_neg}-, one swapped "
                f"pair = {1 / (self.objects_pos * self.objects_neg):.3f}, smallest pair gap {self.object_margin:.4f}); "
                f"trained in {self.train_seconds:.1f} s; tolerance {AUROC_TOL}")


def signal_stats(tmp_root: Path) -> SignalStats:
    """The figures of the signal fixture (see runtime-spec 10.3: a parity set must carry signal)."""
    from align3d_rt.eval.metrics import object_auroc, point_auroc

    samples, reference = signal_samples(tmp_root), signal_reference(tmp_root)
    labels = [np.asarray(s.point_labels) for s in samples]
    n_pos = int(sum(int(np.count_nonzero(lbl)) for lbl in labels))
    n_neg = int(sum(lbl.size for lbl in labels)) - n_pos
    a_point = float(point_auroc(labels, [np.asarray(r.fused) for r in reference]))
    bad = np.array([s.is_anomalous for s in samples], bool)
    scores = np.array([float(r.object_score) for r in reference])
    a_object = float(object_auroc(bad.astype(np.int64), scores))
    margin = float(np.abs(scores[bad][:, None] - scores[~bad][None, :]).min())
    return SignalStats(a_point, n_pos, n_neg, auroc_standard_error(a_point, n_pos, n_neg), a_object,
                       int(bad.sum()), int((~bad).sum()), margin, float(_CACHE.get("train_seconds", float("nan"))))


def object_pairs_tolerance(samples: list[Any], reference: list[Any], max_object_diff: float) -> float:
    """The object AUROC tolerance this set resolves: max(AUROC_TOL, k / (n_pos n_neg)).

    k = (defective, good) pairs whose reference object scores lie within 2 * ``max_object_diff`` (the
    backend's largest object score change): only they can swap, and each swap moves the AUROC by
    1 / (n_pos n_neg) (0.125 on the 6 clouds). The tiny random-backbone CLIP's object scores lie within
    ~1e-3 of each other, so object order is not resolvable at 0.005 here (runtime-spec 10.3)."""
    bad = np.array([bool(s.is_anomalous) for s in samples])
    scores = np.array([float(r.object_score) for r in reference])
    gaps = np.abs(scores[bad][:, None] - scores[~bad][None, :])
    k = int(np.count_nonzero(gaps <= 2.0 * max_object_diff))
    return max(AUROC_TOL, k / float(bad.sum() * (~bad).sum()))


def assert_auroc_parity(samples: list[Any], reference: list[Any], report: Any, route: str) -> None:
    """Point AUROC difference within the documented tolerance (AUROC_TOL); object AUROC difference within
    what the set resolves (``object_pairs_tolerance``); no other parity failure."""
    assert report.checked and set(report.auroc) == {"object", "point"}, (route, report.auroc)
    point, obj = report.auroc["point"], report.auroc["object"]
    assert point["diff"] is not None and abs(point["diff"]) <= AUROC_TOL, (route, point, report.max_abs)
    obj_tol = object_pairs_tolerance(samples, reference, report.max_abs["object_scores"])
    assert obj["diff"] is not None and abs(obj["diff"]) <= obj_tol, (route, obj, obj_tol, report.max_abs)
    others = [f for f in report.failures if not f.startswith("object AUROC")]
    assert not others, (route, report.failures)
