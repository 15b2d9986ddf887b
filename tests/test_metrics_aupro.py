"""AUPRO vs independent, deliberately plain per-threshold implementations (loops, no tricks)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage.measure import label, regionprops
from sklearn.metrics import auc

from align3d_rt.eval.metrics import MetricUndefinedWarning, aupro


def plain_paper_aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3, steps: int = 200,
                      valid: np.ndarray | None = None) -> float:
    """PointAD protocol written out: one full pass per threshold, loop over regions."""
    maps = [np.asarray(m) for m in maps]
    valid = [np.ones(m.shape, bool) for m in maps] if valid is None else [np.asarray(v, bool) for v in valid]
    allv = np.concatenate([m[v] for m, v in zip(maps, valid, strict=True)])
    lo, hi = allv.min(), allv.max()
    step = (hi - lo) / steps
    pros, fprs = [], []
    for th in np.arange(lo, hi, step):
        fractions = []
        fp = normal = 0
        for mask, amap, ok in zip(masks, maps, valid, strict=True):
            gt = (np.asarray(mask) > 0) & ok
            pred = amap > th
            for region in regionprops(label(gt, connectivity=2)):
                rows, cols = region.coords[:, 0], region.coords[:, 1]
                fractions.append(pred[rows, cols].sum() / region.area)
            normal_px = ~gt & ok
            fp += int((pred & normal_px).sum())
            normal += int(normal_px.sum())
        pros.append(np.mean(fractions))
        fprs.append(fp / normal)
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < fpr_limit
    f = fprs[keep]
    f = (f - f.min()) / (f.max() - f.min())
    return float(auc(f, pros[keep]))


def plain_exact_aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Exact curve: every distinct score a threshold (score >= t), (0,0) start, cut at the limit."""
    regions, normals = [], []
    for mask, amap in zip(masks, maps, strict=True):
        gt = np.asarray(mask) > 0
        lab = label(gt, connectivity=2)
        for r in range(1, lab.max() + 1):
            regions.append(amap[lab == r])
        normals.append(amap[~gt])
    normal = np.concatenate(normals)
    xs, ys = [0.0], [0.0]
    for t in sorted(set(np.concatenate([np.ravel(m) for m in maps]).tolist()), reverse=True):
        xs.append(float(np.mean(normal >= t)))
        ys.append(float(np.mean([np.mean(r >= t) for r in regions])))
    area = 0.0
    for i in range(1, len(xs)):
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        if x1 > fpr_limit:
            y_at = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_at) / 2
            break
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def blob_masks(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    masks = np.zeros((k, h, w), np.uint8)
    for i in range(1, k):  # map 0 has no anomaly at all
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, h - 4), rng.integers(0, w - 4)
            masks[i, r:r + rng.integers(1, 5), c:c + rng.integers(1, 5)] = 255
    masks[1, -1, -1] = 1            # a one-pixel region at the corner
    masks[1, -2, -2] = 1            # diagonal neighbour: same region under 8-connectivity
    return masks


def noisy_scores(rng: np.random.Generator, masks: np.ndarray, levels: int | None = None) -> np.ndarray:
    scores = (rng.random(masks.shape) * 0.7 + 0.5 * (masks > 0)).astype(np.float32)
    if levels:
        scores = (np.round(scores * levels) / levels).astype(np.float32)  # many ties
    return scores


@pytest.mark.parametrize("levels", [None, 6])
def test_paper_matches_plain(levels: int | None) -> None:
    rng = np.random.default_rng(0 if levels is None else levels)
    masks = blob_masks(rng, 4, 20, 22)
    scores = noisy_scores(rng, masks, levels)
    got = aupro(masks, scores, kind="paper")
    assert abs(got - plain_paper_aupro(masks, scores)) < 1e-6
    assert 0.0 < got < 1.0


def test_paper_region_never_detected_and_limits() -> None:
    rng = np.random.default_rng(5)
    masks = blob_masks(rng, 3, 18, 18)
    scores = noisy_scores(rng, masks)
    masks[2, 0:2, 15:18] = 1
    scores[2, 0:2, 15:18] = scores.min()    # never above any threshold
    for limit, steps in ((0.3, 200), (0.5, 50), (0.1, 120)):
        got = aupro(masks, scores, fpr_limit=limit, num_thresholds=steps)
        assert abs(got - plain_paper_aupro(masks, scores, limit, steps)) < 1e-6
    # The undetected region lowers PRO compared with scoring it like the other regions.
    better = scores.copy()
    better[2, 0:2, 15:18] = scores.max()
    assert aupro(masks, better) > aupro(masks, scores)


def test_paper_float64_and_valid_mask() -> None:
    rng = np.random.default_rng(9)
    masks = blob_masks(rng, 3, 16, 16)
    scores = noisy_scores(rng, masks).astype(np.float64)
    valid = rng.random(masks.shape) > 0.2
    got = aupro(masks, scores, valid=valid)
    assert abs(got - plain_paper_aupro(masks, scores, valid=valid)) < 1e-6
    # Junk outside the valid cells must not change anything.
    junk = scores.copy()
    junk[~valid] = 100.0
    assert abs(aupro(masks, junk, valid=valid) - got) < 1e-12


@pytest.mark.parametrize("levels", [None, 5])
def test_anomalib_matches_plain(levels: int | None) -> None:
    rng = np.random.default_rng(11 if levels is None else levels)
    masks = blob_masks(rng, 3, 14, 15)
    scores = noisy_scores(rng, masks, levels)
    for limit in (0.3, 0.05, 1.0):
        got = aupro(masks, scores, fpr_limit=limit, kind="anomalib")
        assert abs(got - plain_exact_aupro(masks, scores, limit)) < 1e-6


def test_perfect_and_useless_detectors() -> None:
    rng = np.random.default_rng(2)
    masks = blob_masks(rng, 3, 16, 16)
    perfect = (masks > 0).astype(np.float32) + 0.01 * rng.random(masks.shape).astype(np.float32)
    assert aupro(masks, perfect, kind="anomalib") == pytest.approx(1.0)
    # Reference quirk: with a clean separation every kept FPR is 0, so min-max rescaling is 0/0.
    with pytest.warns(MetricUndefinedWarning, match="two distinct FPRs"):
        assert np.isnan(aupro(masks, perfect, kind="paper"))
    inverted = 1.0 - perfect
    assert aupro(masks, inverted, kind="anomalib") == pytest.approx(0.0)


def test_undefined_cases_return_nan_with_reason() -> None:
    scores = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    for kind in ("paper", "anomalib"):
        with pytest.warns(MetricUndefinedWarning, match="no anomalous pixel"):
            assert np.isnan(aupro(np.zeros((2, 8, 8), np.uint8), scores, kind=kind))
        with pytest.warns(MetricUndefinedWarning, match="no normal pixel"):
            assert np.isnan(aupro(np.ones((2, 8, 8), np.uint8), scores, kind=kind))
    with pytest.warns(MetricUndefinedWarning, match="equal"):
        assert np.isnan(aupro(np.eye(8, dtype=np.uint8)[None], np.ones((1, 8, 8), np.float32)))
    with pytest.raises(ValueError, match="kind"):
        aupro(np.eye(8)[None], scores[:1], kind="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        aupro(np.eye(8)[None], scores[:1, :4])
    with pytest.raises(ValueError, match="NaN"):
        bad = scores[:1].copy()
        bad[0, 0, 0] = np.nan
        aupro(np.eye(8)[None], bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(aupro(np.eye(8, dtype=np.uint8)[None], scores[:1]))
