"""The AUROC standard error used to judge whether a parity set can check the AUROC tolerance (runtime-spec 10.3)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from align3d_rt.eval.parity import auroc_standard_error


def test_chance_level_matches_the_closed_form() -> None:
    """At A = 0.5, Q1 = Q2 = 1/3, so SE^2 = (1/4 + (n+ + n- - 2)/12) / (n+ n-)."""
    for n_pos, n_neg in ((1, 1), (10, 30), (1569, 106022)):
        want = math.sqrt((0.25 + (n_pos + n_neg - 2) / 12.0) / (n_pos * n_neg))
        assert auroc_standard_error(0.5, n_pos, n_neg) == pytest.approx(want, rel=1e-12)


def test_agrees_with_the_spread_of_independent_draws() -> None:
    """Binormal scores (d' = 1): the AUROC's spread over 400 independent sets is within 15% of the formula."""
    rng = np.random.default_rng(0)
    n_pos, n_neg = 40, 120
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    aurocs = [roc_auc_score(labels, np.r_[rng.normal(1.0, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)])
              for _ in range(400)]
    se = auroc_standard_error(float(np.mean(aurocs)), n_pos, n_neg)
    assert 0.85 < float(np.std(aurocs)) / se < 1.15, (np.std(aurocs), se)


def test_shrinks_with_more_items_and_refuses_one_class() -> None:
    assert auroc_standard_error(0.7, 100, 1000) < auroc_standard_error(0.7, 10, 100)
    assert auroc_standard_error(1.0, 5, 5) == 0.0
    for args in ((0.7, 0, 10), (0.7, 10, 0), (1.2, 5, 5), (float("nan"), 5, 5)):
        with pytest.raises(ValueError, match="AUROC standard error"):
            auroc_standard_error(*args)
