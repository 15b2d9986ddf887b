"""Evaluation at a calibrated operating point (runtime-spec §13): what a threshold does to parts.

AUROC/AUPRO rank scores; these figures say what the *decision* does at the calibration's
thresholds, per test class:

- object level (bad = positive): ``false_reject`` = share of good parts rejected
  (score > object threshold, strict as in §13.4), ``false_accept`` = share of bad parts accepted,
  ``f1`` at that threshold;
- region level: the ground-truth defects of a part are the connected groups of its labelled points
  under §13.3's single-linkage rule (the cloud's spacing h, radius ``spacing_factor * h``, no size
  filter); ``defects_covered`` = share of those defects that share at least one point with a
  reported region, ``regions_on_defect`` = share of reported regions (good parts' included) that
  share at least one point with a defect.

A share whose denominator is 0 is None ("-" in tables). The false-reject range of a conformal
threshold (``conformal_false_reject_range``) is the interval the number of rejected good test parts
falls into with the stated probability over calibration sets and test sets.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from align3d_rt.eval.calibration import conformal_rank  # noqa: F401  (re-exported for callers)


@dataclass(frozen=True)
class RegionHits:
    """Region-level counts of one part (or summed over parts)."""

    n_defects: int = 0
    n_covered: int = 0
    n_regions: int = 0
    n_on_defect: int = 0

    def __add__(self, other: RegionHits) -> RegionHits:
        return RegionHits(self.n_defects + other.n_defects, self.n_covered + other.n_covered,
                          self.n_regions + other.n_regions, self.n_on_defect + other.n_on_defect)


def _share(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


@dataclass
class OperatingPoint:
    """One class's figures at the calibrated thresholds (shares in [0, 1], None = undefined)."""

    n_good: int
    n_bad: int
    object_threshold: float
    target_false_reject: float | None
    false_reject: float | None
    false_accept: float | None
    f1: float | None
    hits: RegionHits = field(default_factory=RegionHits)
    n_false_rejects: int = 0
    false_reject_range: tuple[int, int] | None = None   # conformal: the 90 % range of n_false_rejects

    @property
    def defects_covered(self) -> float | None:
        return _share(self.hits.n_covered, self.hits.n_defects)

    @property
    def regions_on_defect(self) -> float | None:
        return _share(self.hits.n_on_defect, self.hits.n_regions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["defects_covered"] = self.defects_covered
        d["regions_on_defect"] = self.regions_on_defect
        d["false_reject_range"] = list(self.false_reject_range) if self.false_reject_range else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OperatingPoint:
        keep = {k: d[k] for k in ("n_good", "n_bad", "object_threshold", "target_false_reject", "false_reject",
                                  "false_accept", "f1", "n_false_rejects")}
        rng = d.get("false_reject_range")
        return cls(**keep, hits=RegionHits(**d["hits"]), false_reject_range=tuple(rng) if rng else None)


def object_operating_point(object_scores: Sequence[float], labels: Sequence[int], threshold: float,
                           target_false_reject: float | None = None, hits: RegionHits | None = None
                           ) -> OperatingPoint:
    """Reject/accept rates and F1 (bad = positive) of the decision ``score > threshold``."""
    s = np.asarray(object_scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.shape[0]} scores but {y.shape[0]} labels")
    rejected = s > float(threshold)
    n_good, n_bad = int((~y).sum()), int(y.sum())
    fp = int((rejected & ~y).sum())   # good parts rejected
    tp = int((rejected & y).sum())    # bad parts rejected
    fn = n_bad - tp                   # bad parts accepted
    return OperatingPoint(n_good=n_good, n_bad=n_bad, object_threshold=float(threshold),
                          target_false_reject=target_false_reject, false_reject=_share(fp, n_good),
                          false_accept=_share(fn, n_bad), f1=_share(2 * tp, 2 * tp + fp + fn),
                          hits=hits or RegionHits(), n_false_rejects=fp)


def defect_groups(points: np.ndarray, point_labels: np.ndarray, spacing_factor: float) -> np.ndarray:
    """(N,) int32: the ground-truth defect each point belongs to (1, 2, ...; 0 = not labelled).

    Labelled points grouped by §13.3 steps 1-4 (the whole cloud's spacing, no size filter)."""
    from align3d_rt.runtime.decisions import find_regions

    marks = (np.asarray(point_labels) > 0).astype(np.float32)
    if not marks.any():
        return np.zeros(marks.shape[0], dtype=np.int32)
    found = find_regions(np.asarray(points, dtype=np.float32), marks, 0.5, 1, float(spacing_factor), 0.0, 1.0)
    return np.asarray(found.labels, dtype=np.int32)


def region_hits(region_labels: np.ndarray, defect_labels: np.ndarray) -> RegionHits:
    """Counts for one part: defects, defects touched by a region, regions, regions touching a defect."""
    r = np.asarray(region_labels)
    d = np.asarray(defect_labels)
    if r.shape != d.shape:
        raise ValueError(f"{r.shape[0]} region labels but {d.shape[0]} defect labels")
    both = (r > 0) & (d > 0)
    return RegionHits(n_defects=int(np.unique(d[d > 0]).size), n_covered=int(np.unique(d[both]).size),
                      n_regions=int(np.unique(r[r > 0]).size), n_on_defect=int(np.unique(r[both]).size))


def part_region_hits(points: np.ndarray, fused: np.ndarray, point_labels: np.ndarray | None,
                     calibration: Any) -> RegionHits:
    """The regions §13.3 reports for one scored part against its ground-truth defects."""
    from align3d_rt.runtime.decisions import find_regions

    pts = np.asarray(points, dtype=np.float32)
    cal = calibration
    found = find_regions(pts, np.asarray(fused, dtype=np.float32), cal.point.threshold, cal.min_points,
                         cal.spacing_factor, cal.point.lo, cal.point.hi)
    labels = np.zeros(pts.shape[0], dtype=np.uint8) if point_labels is None else point_labels
    return region_hits(found.labels, defect_groups(pts, labels, cal.spacing_factor))


def at_operating_point(object_scores: Sequence[float], labels: Sequence[int], hits: RegionHits,
                       calibration: Any) -> OperatingPoint:
    """A class's figures at a calibration's object threshold; for the conformal rule also the 90 % range
    the number of rejected good parts falls into (``conformal_false_reject_range``)."""
    rule = calibration.rule  # {"name", "target_false_reject", ...} (§13.2)
    op = object_operating_point(object_scores, labels, calibration.object.threshold,
                                target_false_reject=rule.get("target_false_reject"), hits=hits)
    rank = calibration.object.rank
    if rule.get("name") == "conformal" and rank is not None and op.n_good > 0:
        op.false_reject_range = conformal_false_reject_range(calibration.n_good, int(rank), op.n_good)
    return op


def conformal_false_reject_range(n_calibration: int, rank: int, n_test: int, level: float = 0.9) -> tuple[int, int]:
    """Central ``level`` range of the number of rejected good test parts under a conformal threshold.

    The threshold x_(k) of n calibration parts has a false-reject rate p ~ Beta(n+1-k, k) over
    calibration sets; given p, the rejects among n_test new good parts are Binomial(n_test, p). So
    the count is Beta-binomial(n_test, n+1-k, k); returned: its (1-level)/2 and (1+level)/2 quantiles."""
    from scipy import stats

    if not 1 <= rank <= n_calibration:
        raise ValueError(f"rank {rank} outside 1..{n_calibration}")
    dist = stats.betabinom(n_test, n_calibration + 1 - rank, rank)
    lo, hi = dist.ppf((1 - level) / 2), dist.ppf((1 + level) / 2)
    return int(lo), int(hi)


def operating_markdown(rows: Sequence[tuple[str, OperatingPoint]]) -> str:
    """The operating-point table: per class n, target, measured false-reject, false-accept, F1, region scores."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100.0 * v:.1f}"

    head = ["class", "good", "bad", "target FR", "false reject", "90% range (parts)", "false accept", "F1",
            "defects covered", "regions on defect"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, op in rows:
        rng = f"{op.false_reject_range[0]}-{op.false_reject_range[1]}" if op.false_reject_range else "-"
        fr = "-" if op.false_reject is None else f"{pct(op.false_reject)} ({op.n_false_rejects}/{op.n_good})"
        lines.append("| " + " | ".join([
            name, str(op.n_good), str(op.n_bad), pct(op.target_false_reject), fr, rng, pct(op.false_accept),
            pct(op.f1), f"{pct(op.defects_covered)} ({op.hits.n_covered}/{op.hits.n_defects})",
            f"{pct(op.regions_on_defect)} ({op.hits.n_on_defect}/{op.hits.n_regions})"]) + " |")
    return "\n".join(lines) + "\n"
