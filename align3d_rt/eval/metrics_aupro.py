"""AUPRO (area under the per-region-overlap curve up to an FPR limit), two definitions.

``kind='paper'`` reproduces the protocol of the PointAD / AnomalyCLIP evaluation code
(``cal_pro_score``, read for the facts):

- thresholds ``np.arange(min, max, (max - min) / num_thresholds)`` over all scores of all maps
  (min and max in the maps' dtype; ``arange`` yields float64 and, by float rounding, sometimes
  ``num_thresholds + 1`` values - kept as is);
- a pixel is predicted anomalous when ``score > threshold`` (strict);
- PRO = mean over every connected GT region of every map (8-connectivity,
  ``skimage.measure.label`` default for 2-D) of the fraction of the region's pixels predicted
  anomalous; FPR = predicted-anomalous normal pixels / normal pixels (all maps pooled);
- keep the thresholds with ``FPR < fpr_limit`` (strict), rescale those FPRs min-max to [0, 1]
  (``(f - min) / (max - min)`` of the kept FPRs, *not* divided by the limit), trapezoidal area.

``kind='anomalib'`` is the exact curve (anomalib / MVTec official style): every distinct score is
a threshold (predicted anomalous when ``score >= threshold``), the curve starts at (0, 0), is
linearly interpolated at ``FPR = fpr_limit``, integrated by trapezoids and divided by the limit.

Both are computed without one pass per threshold: regions are labelled once per map, each pixel
is binned by how many thresholds it exceeds (``searchsorted``), and per-threshold counts come
from weighted ``bincount`` + cumulative sums (each region pixel weighs 1/area of its region, so the
sum over regions of the detected fractions is a sum over pixels). Peak extra memory: one map's
temporaries for 'paper'; for 'anomalib' the scores of all normal pixels (their dtype) plus the
anomalous pixels' scores and weights.

Undefined cases return ``nan`` with a :class:`MetricUndefinedWarning` naming the reason: no
anomalous pixel (no region), no normal pixel, constant scores, or fewer than two thresholds with
FPR below the limit ('paper').
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from skimage.measure import label as label_regions

__all__ = ["MetricUndefinedWarning", "aupro", "undefined"]

AuproKind = Literal["paper", "anomalib"]
Maps = Sequence[np.ndarray] | np.ndarray  # (K,H,W) or K 2-D maps


class MetricUndefinedWarning(UserWarning):
    """A metric is undefined for the given data (e.g. one class only); the value is nan."""


def undefined(metric: str, reason: str) -> float:
    """Warn that ``metric`` is undefined for ``reason`` and return nan."""
    warnings.warn(f"{metric} is undefined: {reason}; returning nan", MetricUndefinedWarning, stacklevel=3)
    return float("nan")


def _pairs(masks: Sequence[np.ndarray] | np.ndarray, score_maps: Sequence[np.ndarray] | np.ndarray,
           valid: Sequence[np.ndarray] | np.ndarray | None) -> int:
    """Check the three sequences line up map by map; return their length."""
    if len(masks) != len(score_maps) or (valid is not None and len(valid) != len(masks)):
        raise ValueError(f"masks ({len(masks)}), score_maps ({len(score_maps)})"
                         + ("" if valid is None else f" and valid ({len(valid)})") + " differ in length")
    for i in range(len(masks)):
        shape = np.shape(score_maps[i])
        if len(shape) != 2 or np.shape(masks[i]) != shape or (valid is not None and np.shape(valid[i]) != shape):
            raise ValueError(f"map {i}: mask {np.shape(masks[i])} and scores {shape} must be equal 2-D shapes")
    return len(masks)


def _map(score_maps: Maps, valid: Maps | None, i: int) -> tuple[np.ndarray, np.ndarray | None]:
    scores = np.asarray(score_maps[i])
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    keep = None if valid is None else np.asarray(valid[i], dtype=bool)
    return scores, keep


def _regions(mask: np.ndarray, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 = normal) of the 8-connected GT regions, and each label's area (index = label)."""
    binary = np.asarray(mask) > 0
    if keep is not None:
        binary &= keep
    labels = label_regions(binary, connectivity=2)
    return labels, np.bincount(labels.ravel())


def _score_range(score_maps: Maps, valid: Maps | None, count: int) -> tuple[np.floating, np.floating]:
    lo: np.floating | None = None
    hi: np.floating | None = None
    for i in range(count):
        scores, keep = _map(score_maps, valid, i)
        vals = scores if keep is None else scores[keep]
        if vals.size == 0:
            continue
        if np.isnan(vals).any():
            raise ValueError(f"score map {i} contains NaN")
        lo = vals.min() if lo is None else min(lo, vals.min())
        hi = vals.max() if hi is None else max(hi, vals.max())
    if lo is None or hi is None:
        raise ValueError("no scored pixels (all maps empty or fully masked out)")
    return lo, hi


def _aupro_paper(masks: Maps, score_maps: Maps, valid: Maps | None, count: int, fpr_limit: float,
                 num_thresholds: int) -> float:
    lo, hi = _score_range(score_maps, valid, count)
    delta = (hi - lo) / num_thresholds
    if not delta > 0:
        return undefined("AUPRO", "all scores are equal (no threshold range)")
    thresholds = np.arange(lo, hi, delta)
    nbins = thresholds.size + 1
    pro_hist = np.zeros(nbins, np.float64)
    fp_hist = np.zeros(nbins, np.int64)
    n_regions = 0
    for i in range(count):
        scores, keep = _map(score_maps, valid, i)
        labels, areas = _regions(masks[i], keep)
        normal = labels == 0 if keep is None else (labels == 0) & keep
        fp_hist += np.bincount(np.searchsorted(thresholds, scores[normal], side="left"), minlength=nbins)
        if areas.size > 1:
            n_regions += areas.size - 1
            inside = labels > 0
            weights = 1.0 / areas[labels[inside]]
            bins = np.searchsorted(thresholds, scores[inside], side="left")
            pro_hist += np.bincount(bins, weights=weights, minlength=nbins)
    n_normal = int(fp_hist.sum())
    if n_regions == 0:
        return undefined("AUPRO", "no anomalous pixel in any mask")
    if n_normal == 0:
        return undefined("AUPRO", "no normal pixel in any mask")
    # A pixel in bin k exceeds thresholds 0..k-1: counts at threshold j = sum of bins k > j.
    exceed_fp = np.cumsum(fp_hist[::-1])[::-1][1:]
    exceed_pro = np.cumsum(pro_hist[::-1])[::-1][1:]
    fprs = exceed_fp / n_normal
    pros = exceed_pro / n_regions
    kept = fprs < fpr_limit
    fprs, pros = fprs[kept], pros[kept]
    if fprs.size < 2 or fprs.max() == fprs.min():
        return undefined("AUPRO", f"fewer than two distinct FPRs below {fpr_limit}")
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    # FPR falls as the threshold rises: integrate over increasing FPR.
    return float(np.trapezoid(pros[::-1], fprs[::-1]))


def _aupro_exact(masks: Maps, score_maps: Maps, valid: Maps | None, count: int, fpr_limit: float) -> float:
    n_normal, n_anomalous, n_regions, dtype = 0, 0, 0, None
    for i in range(count):
        scores, keep = _map(score_maps, valid, i)
        labels, areas = _regions(masks[i], keep)
        n_in = int(areas[1:].sum())
        n_anomalous += n_in
        n_normal += (labels.size if keep is None else int(keep.sum())) - n_in
        n_regions += areas.size - 1
        dtype = scores.dtype if dtype is None else np.promote_types(dtype, scores.dtype)
    if n_regions == 0:
        return undefined("AUPRO", "no anomalous pixel in any mask")
    if n_normal == 0:
        return undefined("AUPRO", "no normal pixel in any mask")
    neg = np.empty(n_normal, dtype)
    pos = np.empty(n_anomalous, dtype)
    pos_w = np.empty(n_anomalous, np.float64)
    a = b = 0
    for i in range(count):
        scores, keep = _map(score_maps, valid, i)
        if np.isnan(scores if keep is None else scores[keep]).any():
            raise ValueError(f"score map {i} contains NaN")
        labels, areas = _regions(masks[i], keep)
        normal = labels == 0 if keep is None else (labels == 0) & keep
        vals = scores[normal]
        neg[a:a + vals.size] = vals
        a += vals.size
        inside = labels > 0
        vals = scores[inside]
        pos[b:b + vals.size] = vals
        pos_w[b:b + vals.size] = 1.0 / areas[labels[inside]]
        b += vals.size
    neg.sort()
    order = np.argsort(pos, kind="stable")
    pos, pos_w = pos[order], pos_w[order]
    # Only thresholds down to the first one whose FPR exceeds the limit matter.
    rank = min(n_normal - 1, int(np.floor(fpr_limit * n_normal)))
    cut = neg[n_normal - 1 - rank]
    cands = np.unique(np.concatenate([neg[n_normal - 1 - rank:], pos[np.searchsorted(pos, cut):]]))[::-1]
    fprs = (n_normal - np.searchsorted(neg, cands, side="left")) / n_normal
    cum_w = np.concatenate([[0.0], np.cumsum(pos_w)])
    pros = (cum_w[-1] - cum_w[np.searchsorted(pos, cands, side="left")]) / n_regions
    x = np.concatenate([[0.0], fprs])
    y = np.concatenate([[0.0], pros])
    beyond = np.nonzero(x > fpr_limit)[0]
    if beyond.size:
        j = beyond[0]
        y_lim = y[j - 1] + (y[j] - y[j - 1]) * (fpr_limit - x[j - 1]) / (x[j] - x[j - 1])
        x = np.concatenate([x[:j], [fpr_limit]])
        y = np.concatenate([y[:j], [y_lim]])
    return float(np.trapezoid(y, x) / fpr_limit)


def aupro(masks: Sequence[np.ndarray] | np.ndarray, score_maps: Sequence[np.ndarray] | np.ndarray,
          fpr_limit: float = 0.3, num_thresholds: int = 200, kind: AuproKind = "paper",
          valid: Sequence[np.ndarray] | np.ndarray | None = None) -> float:
    """AUPRO of score maps against GT masks (see the module docstring for both definitions).

    masks: (K,H,W) bool/uint8 (nonzero = anomalous) or a sequence of 2-D masks; score_maps: the
    same shapes, float (higher = more anomalous). valid: optional same-shape bool maps; pixels
    outside are ignored entirely (not normal, not in a region, not in the score range).
    num_thresholds is used by 'paper' only. Returns a float in [0, 1] or nan (warned).
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
    count = _pairs(masks, score_maps, valid)
    if count == 0:
        return undefined("AUPRO", "no maps given")
    if kind == "paper":
        return _aupro_paper(masks, score_maps, valid, count, fpr_limit, num_thresholds)
    if kind == "anomalib":
        return _aupro_exact(masks, score_maps, valid, count, fpr_limit)
    raise ValueError(f"kind must be 'paper' or 'anomalib', got {kind!r}")
