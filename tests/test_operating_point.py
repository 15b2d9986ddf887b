"""Operating-point figures (eval/operating_point.py) on inputs whose answers are known by hand."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from align3d_rt.eval.operating_point import (OperatingPoint, RegionHits, conformal_false_reject_range,
                                             conformal_rank, object_operating_point, operating_markdown,
                                             region_hits)


def test_object_rates_and_f1_by_hand() -> None:
    # good: 0.1 0.2 0.6 (0.6 rejected at t = 0.5); bad: 0.4 0.5 0.9 0.7 (0.4 and 0.5 accepted: strict >)
    op = object_operating_point([0.1, 0.2, 0.6, 0.4, 0.5, 0.9, 0.7], [0, 0, 0, 1, 1, 1, 1], 0.5,
                                target_false_reject=0.05)
    assert (op.n_good, op.n_bad, op.n_false_rejects) == (3, 4, 1)
    assert op.false_reject == pytest.approx(1 / 3)
    assert op.false_accept == pytest.approx(2 / 4)
    # tp = 2, fp = 1, fn = 2: F1 = 4 / (4 + 1 + 2)
    assert op.f1 == pytest.approx(4 / 7)
    assert op.target_false_reject == 0.05 and op.object_threshold == 0.5


def test_object_rates_undefined_shares_are_none() -> None:
    only_good = object_operating_point([0.1, 0.3], [0, 0], 0.2)
    assert only_good.false_accept is None and only_good.false_reject == 0.5
    assert only_good.f1 == 0.0  # one false positive, no true positive: F1 = 0, not undefined
    nothing = object_operating_point([0.1], [0], 0.5)
    assert nothing.f1 is None and nothing.false_reject == 0.0
    with pytest.raises(ValueError):
        object_operating_point([0.1, 0.2], [0], 0.5)


def test_region_hits_by_hand() -> None:
    #            0  1  2  3  4  5  6  7  8
    regions = np.array([1, 1, 0, 2, 0, 0, 3, 3, 0])
    defects = np.array([0, 5, 5, 0, 0, 7, 0, 0, 9])
    hits = region_hits(regions, defects)
    # defects 5, 7, 9; only 5 shares a point (index 1) with a region; regions 1, 2, 3: only 1 touches a defect
    assert hits == RegionHits(n_defects=3, n_covered=1, n_regions=3, n_on_defect=1)
    assert region_hits(np.zeros(4, int), np.zeros(4, int)) == RegionHits()
    total = hits + RegionHits(1, 1, 2, 0)
    assert total == RegionHits(4, 2, 5, 1)
    op = object_operating_point([0.0], [1], 0.5, hits=total)
    assert op.defects_covered == pytest.approx(2 / 4) and op.regions_on_defect == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        region_hits(np.zeros(3, int), np.zeros(4, int))


def test_conformal_range_matches_beta_binomial_simulation() -> None:
    n, alpha, m = 39, 0.05, 60
    k = conformal_rank(n, alpha)
    assert k == 38  # ceil(40 * 0.95)
    lo, hi = conformal_false_reject_range(n, k, m)
    # expectation of the rate is (n+1-k)/(n+1) = 0.05 -> 3 of 60 parts on average, inside the range
    assert lo <= 3 <= hi
    # simulate: calibration sets of n uniform good scores, threshold x_(k), m new good parts
    rng = np.random.default_rng(0)
    cal = np.sort(rng.random((20000, n)), axis=1)[:, k - 1]
    counts = rng.binomial(m, 1.0 - cal)
    inside = np.mean((counts >= lo) & (counts <= hi))
    assert inside >= 0.9 - 0.01
    assert np.mean(counts > hi) <= 0.05 + 0.01
    assert stats.betabinom(m, n + 1 - k, k).mean() == pytest.approx(m * 2 / 40)
    with pytest.raises(ValueError):
        conformal_false_reject_range(5, 6, 10)


def test_operating_point_round_trip_and_table() -> None:
    op = object_operating_point([0.1, 0.9, 0.2], [0, 1, 0], 0.5, target_false_reject=0.05, hits=RegionHits(2, 1, 4, 3))
    op.false_reject_range = (0, 3)
    back = OperatingPoint.from_dict(op.to_dict())
    assert back == op
    md = operating_markdown([("wave", op)])
    row = md.splitlines()[2]
    assert row.startswith("| wave | 2 | 1 | 5.0 | 0.0 (0/2) | 0-3 | 0.0 | 100.0 | 50.0 (1/2) | 75.0 (3/4) |")
