"""Fitting a calibration from scored good (and optionally bad) parts (docs/runtime-spec.md 13.1).

Rules (a part is rejected when its score is strictly greater than the threshold; α = target
false-reject rate):
  conformal     x_(k), k = ceil((n+1)(1-α)): P(reject a new good part) = (n+1-k)/(n+1) <= α
  pac           x_(k), smallest k with P(Beta(n+1-k, k) > α) <= 1-c: false-reject rate <= α with confidence c
  f1            the candidate maximising F1 (bad = positive); ties: the smallest threshold
  false-accept  the largest candidate t with #{bad <= t} <= floor(β n_bad)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from align3d_rt import __version__
from align3d_rt.artifacts.calibration import (
    DEFAULT_MIN_POINTS,
    DEFAULT_SPACING_FACTOR,
    RULES,
    Calibration,
    ThresholdSet,
    local_time,
)
from align3d_rt.errors import Align3DError

DEFAULT_TARGET_FALSE_REJECT = 0.05
DEFAULT_CONFIDENCE = 0.9
UPPER_QUANTILE = 0.9  # the recorded upper quantile of the true false-reject rate (false_reject_upper_90)


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n+1)(1-α)) (the product rounded to 1e-9 first, so 20 * 0.95 is 19, not 19.000000000000004)."""
    return math.ceil(round((n + 1) * (1.0 - alpha), 9))


def pac_rank(n: int, alpha: float, confidence: float) -> int | None:
    """Smallest k in 1..n with P(Beta(n+1-k, k) > α) <= 1-c, or None when no k fits."""
    from scipy.stats import beta

    ks = np.arange(1, n + 1)
    ok = beta.sf(alpha, n + 1 - ks, ks) <= 1.0 - confidence
    return int(ks[np.argmax(ok)]) if ok.any() else None


def good_parts_needed(rule: str, alpha: float, confidence: float | None = None) -> int:
    """The fewest good parts the rule needs (conformal: k <= n; pac: (1-α)^n <= 1-c). f1 and
    false-accept need what conformal needs: the point threshold is always a good-part rule."""
    if rule == "conformal":
        n = max(1, math.floor((1.0 - alpha) / alpha) - 1)
        while conformal_rank(n, alpha) > n:
            n += 1
        return n
    if rule == "pac":
        c = DEFAULT_CONFIDENCE if confidence is None else confidence
        n = max(1, math.floor(math.log(1.0 - c) / math.log(1.0 - alpha)) - 1)
        while pac_rank(n, alpha, c) is None:
            n += 1
        return n
    return good_parts_needed("conformal", alpha)


def _upper(n: int, k: int) -> float:
    from scipy.stats import beta

    return float(beta.ppf(UPPER_QUANTILE, n + 1 - k, k))


def check_settings(rule: str, alpha: float, confidence: float | None, beta_fa: float | None, n_bad: int,
                   min_points: int = DEFAULT_MIN_POINTS, spacing_factor: float = DEFAULT_SPACING_FACTOR) -> None:
    """Refuse (one line) rule and region settings that cannot be fitted, before any scoring."""
    if isinstance(min_points, bool) or int(min_points) != min_points or min_points < 1:
        raise Align3DError(f"--min-region-points {min_points}: must be an integer >= 1")
    if not (math.isfinite(spacing_factor) and spacing_factor > 0):
        raise Align3DError(f"--region-spacing-factor {spacing_factor}: must be a finite number > 0")
    if rule not in RULES:
        raise Align3DError(f"--rule {rule}: unknown (known: {', '.join(RULES)})")
    if not 0.0 < alpha < 1.0:  # also refuses nan
        raise Align3DError(f"--target-false-reject {alpha}: must be in (0, 1)")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise Align3DError(f"--confidence {confidence}: must be in (0, 1)")
    if confidence is not None and rule != "pac":
        raise Align3DError(f"--confidence: only with --rule pac (this is --rule {rule})")
    if rule in ("f1", "false-accept") and n_bad < 1:
        raise Align3DError(f"--rule {rule}: needs scored bad parts (--bad), at least 1")
    if rule == "false-accept":
        if beta_fa is None:
            raise Align3DError("--rule false-accept: needs --target-false-accept")
        if not 0.0 <= beta_fa < 1.0:
            raise Align3DError(f"--target-false-accept {beta_fa}: must be in [0, 1)")
    elif beta_fa is not None:
        raise Align3DError(f"--target-false-accept: only with --rule false-accept (this is --rule {rule})")


def _finite(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        raise Align3DError(f"{what}: {int((~np.isfinite(arr)).sum())} score(s) are not finite; they are never used")
    return arr


def fit_threshold(good: Sequence[float] | np.ndarray, bad: Sequence[float] | np.ndarray | None = None,
                  rule: str = "conformal", target_false_reject: float = DEFAULT_TARGET_FALSE_REJECT,
                  confidence: float | None = None, target_false_accept: float | None = None) -> ThresholdSet:
    """The threshold of ``rule`` over good (and bad) scores; lo/hi = min/max of the good scores
    (widened to the threshold under f1/false-accept). Too few good parts: Align3DError naming the
    number needed."""
    x = np.sort(_finite(good, "good parts"))
    b = np.sort(_finite(bad if bad is not None else [], "bad parts"))
    n = len(x)
    check_settings(rule, target_false_reject, confidence, target_false_accept, len(b))
    if rule in ("conformal", "pac"):
        ts = _good_rule(x, rule, target_false_reject, confidence)
        if x[0] == x[-1]:
            raise Align3DError(f"all {n} good parts have the same score {x[0]!r}; cannot normalise (needs lo < hi)")
        return ts
    if n < 1:
        raise Align3DError(f"no good part scored; --rule {rule} needs good parts")
    lo, hi = float(x[0]), float(x[-1])
    if rule == "f1":
        t = _f1_threshold(x, b)
    else:
        assert target_false_accept is not None  # check_settings requires it for this rule
        t = _false_accept_threshold(x, b, float(target_false_accept))
    if min(lo, t) == max(hi, t):
        raise Align3DError(f"all {n} good parts have the same score {x[0]!r}; cannot normalise (needs lo < hi)")
    extras = {"false_reject_bound": None, "false_reject_upper_90": None}
    return ThresholdSet(t, min(lo, t), max(hi, t), None, extras)


def _need(n: int, rule: str, alpha: float, confidence: float | None) -> None:
    needed = good_parts_needed(rule, alpha, confidence)
    if n < needed:
        raise Align3DError(f"{n} good part(s) scored; --rule {rule} at --target-false-reject {alpha}"
                           + (f" and --confidence {confidence or DEFAULT_CONFIDENCE}" if rule == "pac" else "")
                           + f" needs at least {needed} good parts")


def _good_rule(x: np.ndarray, rule: str, alpha: float, confidence: float | None) -> ThresholdSet:
    """conformal/pac threshold x_(k) of sorted good scores ``x`` (lo/hi = min/max of ``x``)."""
    n = len(x)
    _need(n, rule, alpha, confidence)
    k = conformal_rank(n, alpha) if rule == "conformal" else pac_rank(
        n, alpha, DEFAULT_CONFIDENCE if confidence is None else confidence)
    assert k is not None and 1 <= k <= n
    extras = {"false_reject_bound": (n + 1 - k) / (n + 1), "false_reject_upper_90": _upper(n, k)}
    return ThresholdSet(float(x[k - 1]), float(x[0]), float(x[-1]), int(k), extras)


def _f1_threshold(good: np.ndarray, bad: np.ndarray) -> float:
    """The candidate (a good or bad score) maximising F1 of 'bad = score > t'; ties: the smallest."""
    cands = np.unique(np.concatenate([good, bad]))
    tp = len(bad) - np.searchsorted(bad, cands, side="right")    # bad parts rejected
    fp = len(good) - np.searchsorted(good, cands, side="right")  # good parts rejected
    fn = len(bad) - tp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return float(cands[int(np.argmax(f1))])  # argmax: first = smallest threshold among ties


def _false_accept_threshold(good: np.ndarray, bad: np.ndarray, beta_fa: float) -> float:
    """The largest candidate t with #{bad <= t} <= floor(β n_bad)."""
    allowed = math.floor(round(beta_fa * len(bad), 9))
    cands = np.unique(np.concatenate([good, bad]))
    accepted = np.searchsorted(bad, cands, side="right")
    ok = cands[accepted <= allowed]
    if not len(ok):
        raise Align3DError(f"--target-false-accept {beta_fa}: every candidate threshold accepts more than "
                           f"{allowed} of the {len(bad)} bad parts (the lowest score is a bad part's); "
                           "raise --target-false-accept or use --rule conformal")
    return float(ok[-1])


def fit_calibration(
    good_object_scores: Sequence[float] | np.ndarray,
    good_point_scores: Sequence[np.ndarray],
    *,
    product: str,
    source: dict[str, Any],
    scoring: str = "default",
    dataset: str = "",
    category: str = "",
    bad_object_scores: Sequence[float] | np.ndarray | None = None,
    rule: str = "conformal",
    target_false_reject: float = DEFAULT_TARGET_FALSE_REJECT,
    confidence: float | None = None,
    target_false_accept: float | None = None,
    min_points: int = DEFAULT_MIN_POINTS,
    spacing_factor: float = DEFAULT_SPACING_FACTOR,
) -> Calibration:
    """A sealed Calibration from the good parts' object scores and fused point scores (one array per
    part, same order) and optional bad object scores. The point threshold is the conformal (pac under
    --rule pac) threshold of the parts' maximum fused scores; its lo/hi span all good points."""
    if not isinstance(product, str) or not product.strip():
        raise Align3DError("--product: needs a non-empty product name")
    if len(good_point_scores) != len(good_object_scores):
        raise Align3DError(f"{len(good_object_scores)} object scores but {len(good_point_scores)} point score arrays")
    good = _finite(good_object_scores, "good parts")
    bad = _finite(bad_object_scores if bad_object_scores is not None else [], "bad parts")
    check_settings(rule, target_false_reject, confidence, target_false_accept, len(bad), min_points, spacing_factor)
    _need(len(good), rule, target_false_reject, confidence)  # f1/false-accept: the point threshold's n
    obj = fit_threshold(good, bad, rule, target_false_reject, confidence, target_false_accept)
    parts = [_finite(s, "good parts' point scores") for s in good_point_scores]
    if any(len(s) == 0 for s in parts):
        raise Align3DError("good parts: a part has no point scores")
    point_rule = "pac" if rule == "pac" else "conformal"
    pt = _good_rule(np.sort([float(s.max()) for s in parts]), point_rule, target_false_reject,
                    confidence if rule == "pac" else None)
    all_lo = min(float(s.min()) for s in parts)
    all_hi = max(float(s.max()) for s in parts)
    if not all_lo < all_hi:
        raise Align3DError(f"every good point has the same score {all_lo!r}; cannot normalise (needs lo < hi)")
    point = ThresholdSet(pt.threshold, all_lo, all_hi, pt.rank, {})
    return Calibration(
        product=product.strip(), source=dict(source), scoring=scoring, dataset=dataset, category=category,
        rule={"name": rule, "target_false_reject": float(target_false_reject),
              "confidence": (float(confidence) if confidence is not None else DEFAULT_CONFIDENCE)
              if rule == "pac" else None,
              "target_false_accept": float(target_false_accept) if target_false_accept is not None else None},
        n_good=len(good), n_bad=len(bad), object=obj, point=point, min_points=int(min_points),
        spacing_factor=float(spacing_factor), good_object_scores=tuple(float(v) for v in good),
        created=local_time(), software={"align3d_rt": __version__},
    ).sealed()


def guarantee_line(cal: Calibration) -> str:
    """The false-reject guarantee of a calibration in words."""
    rule, n = cal.rule.get("name"), cal.n_good
    alpha = cal.rule.get("target_false_reject")
    bound = cal.object.extras.get("false_reject_bound")
    upper = cal.object.extras.get("false_reject_upper_90")
    if rule == "conformal":
        return (f"a new good part exchangeable with these {n} is rejected with probability {bound:.4f} <= {alpha} "
                f"on average over calibration sets (this set's true rate is below {upper:.4f} with 90 % probability)")
    if rule == "pac":
        return (f"with confidence {cal.rule.get('confidence')} over the calibration set, the false-reject rate is "
                f"at most {alpha} (average {bound:.4f})")
    return f"rule {rule} fits the bad parts too: no false-reject guarantee (use --rule conformal for one)"
