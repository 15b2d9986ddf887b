"""Object/point metrics vs scikit-learn, grid helpers, and both localisation protocols."""
from __future__ import annotations

import numpy as np
import pytest
from blocking import run_blocked
from scipy.ndimage import gaussian_filter
from sklearn.metrics import average_precision_score, roc_auc_score

from align3d_rt.eval.metrics import (
    MetricUndefinedWarning,
    aupro,
    blur_grid,
    grid_metrics,
    object_ap,
    object_auroc,
    per_point_metrics,
    point_auroc,
    points_to_grid,
)


def test_object_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    for trial in range(5):
        labels = rng.integers(0, 2, 40)
        labels[:2] = (0, 1)
        scores = rng.random(40)
        if trial % 2:
            scores = np.round(scores * 4) / 4  # heavy ties
        assert abs(object_auroc(labels, scores) - roc_auc_score(labels, scores)) < 1e-12
        assert abs(object_ap(labels, scores) - average_precision_score(labels, scores)) < 1e-12
    assert object_auroc([0, 1, 1], [0.1, 0.9, 0.8]) == 1.0
    assert object_auroc([0, 1], [0.5, 0.5]) == 0.5


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0], []])
def test_object_metrics_one_class_is_nan(labels: list[int]) -> None:
    scores = np.linspace(0, 1, len(labels))
    for fn in (object_auroc, object_ap):
        with pytest.warns(MetricUndefinedWarning, match="undefined"):
            assert np.isnan(fn(labels, scores))


def test_object_metrics_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        object_auroc([0, 1], [0.2])
    with pytest.raises(ValueError, match="NaN"):
        object_ap([0, 1], [0.2, np.nan])
    with pytest.raises(ValueError, match="0/1"):
        object_auroc([0, 2], [0.2, 0.3])


def test_point_auroc_matches_sklearn_with_ties_and_empty_class_samples() -> None:
    rng = np.random.default_rng(1)
    labels, scores = [], []
    for i in range(12):
        n = int(rng.integers(50, 3000))
        lab = (rng.random(n) < 0.1).astype(np.uint8) if i % 4 else np.zeros(n, np.uint8)  # some all-normal
        sc = (rng.random(n) + 0.3 * lab).astype(np.float32)
        if i % 3 == 0:
            sc = np.round(sc * 8).astype(np.float32) / 8  # ties inside and across samples
        labels.append(lab)
        scores.append(sc)
    ref = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert abs(point_auroc(labels, scores) - ref) < 1e-6
    # float64 and bool labels go through the same path
    f64 = [s.astype(np.float64) + 1e-9 * np.arange(s.size) for s in scores]
    bl = [lab.astype(bool) for lab in labels]
    assert abs(point_auroc(bl, f64) - roc_auc_score(np.concatenate(bl), np.concatenate(f64))) < 1e-6
    # all tied -> 0.5; perfect -> 1
    assert point_auroc([np.array([0, 1, 0, 1])], [np.ones(4, np.float32)]) == 0.5
    assert point_auroc([np.array([0, 1]), np.array([1])], [np.array([0.1, 0.5]), np.array([0.7])]) == 1.0


def test_point_auroc_undefined_and_bad_input() -> None:
    with pytest.warns(MetricUndefinedWarning, match="no anomalous point"):
        assert np.isnan(point_auroc([np.zeros(5)], [np.arange(5.0)]))
    with pytest.warns(MetricUndefinedWarning, match="no normal point"):
        assert np.isnan(point_auroc([np.ones(5)], [np.arange(5.0)]))
    with pytest.raises(ValueError, match="sample 0"):
        point_auroc([np.zeros(5)], [np.arange(4.0)])
    with pytest.raises(ValueError, match="NaN"):
        point_auroc([np.array([0, 1])], [np.array([0.0, np.nan])])


def test_points_to_grid_and_blur() -> None:
    idx = np.array([0, 5, 11], np.int64)
    grid = points_to_grid(np.array([0.5, 0.25, 1.0]), idx, (3, 4))
    assert grid.dtype == np.float32 and grid.shape == (3, 4)
    expected = np.zeros(12, np.float32)
    expected[idx] = (0.5, 0.25, 1.0)
    np.testing.assert_array_equal(grid.ravel(), expected)
    with pytest.raises(ValueError, match="grid_index"):
        points_to_grid(np.ones(1), np.array([12]), (3, 4))
    img = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    out = blur_grid(img)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, gaussian_filter(img, sigma=4))
    assert np.abs(out - gaussian_filter(img, sigma=4, mode="constant")).max() > 1e-3  # the mode matters


def _organized_samples(rng: np.random.Generator, count: int, h: int,
                       w: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[tuple[int, int]]]:
    scores, labels, indices, shapes = [], [], [], []
    for i in range(count):
        valid = rng.random((h, w)) > 0.3
        lab = np.zeros((h, w), np.uint8)
        if i % 3:
            r, c = rng.integers(0, h - 5, 2)
            lab[r:r + 5, c:c + 4] = 1
        lab &= valid
        idx = np.flatnonzero(valid)
        labels.append(lab.ravel()[idx])
        scores.append((rng.random(idx.size) * 0.6 + 0.5 * labels[-1]).astype(np.float32))
        indices.append(idx)
        shapes.append((h, w))
    return scores, labels, indices, shapes


def test_grid_metrics_reference_protocol() -> None:
    rng = np.random.default_rng(3)
    scores, labels, indices, shapes = _organized_samples(rng, 5, 24, 26)
    got = grid_metrics(scores, labels, indices, shapes, sigma=2.0)
    maps = [gaussian_filter(points_to_grid(s, i, sh), sigma=2.0)
            for s, i, sh in zip(scores, indices, shapes, strict=True)]
    masks = [points_to_grid(lab, i, sh) > 0 for lab, i, sh in zip(labels, indices, shapes, strict=True)]
    ref_auroc = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    assert abs(got["auroc"] - ref_auroc) < 1e-6
    assert abs(got["aupro"] - aupro(np.stack(masks), np.stack(maps))) < 1e-12
    assert 0.5 < got["auroc"] <= 1.0 and 0.0 < got["aupro"] <= 1.0


def test_per_point_metrics_true_protocol() -> None:
    rng = np.random.default_rng(4)
    scores, labels, indices, shapes = _organized_samples(rng, 4, 20, 20)
    got = per_point_metrics(scores, labels, indices, shapes)
    assert abs(got["auroc"] - roc_auc_score(np.concatenate(labels), np.concatenate(scores))) < 1e-6
    # AUPRO over valid points only: the same as AUPRO on the grids with a validity mask, and
    # independent of what the invalid cells would hold.
    masks = np.stack([points_to_grid(lab, i, sh) for lab, i, sh in zip(labels, indices, shapes, strict=True)])
    maps = np.stack([points_to_grid(s, i, sh) for s, i, sh in zip(scores, indices, shapes, strict=True)])
    valid = np.stack([points_to_grid(np.ones(i.size), i, sh) > 0 for i, sh in zip(indices, shapes, strict=True)])
    maps[~valid] = -5.0
    assert abs(got["aupro"] - aupro(masks, maps, valid=valid)) < 1e-12
    assert abs(got["aupro"] - aupro(masks, np.where(valid, maps, 0.0), valid=valid)) < 1e-12
    anomalib = per_point_metrics(scores, labels, indices, shapes, kind="anomalib")["aupro"]
    assert 0.0 < anomalib <= 1.0
    # Unorganized clouds: AUROC only.
    with pytest.warns(MetricUndefinedWarning, match="organized grid"):
        res = per_point_metrics(scores, labels)
    assert res["auroc"] == got["auroc"] and np.isnan(res["aupro"])


def test_metrics_import_without_torch() -> None:
    res = run_blocked("""
        import numpy as np
        from align3d_rt.eval.metrics import point_auroc, aupro
        assert point_auroc([np.array([0, 1])], [np.array([0.2, 0.9])]) == 1.0
        assert 'torch' not in sys.modules
        print('ok')
    """, "torch")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


@pytest.mark.heavy
def test_point_auroc_full_size_many_chunks() -> None:
    """20 samples of 112,896 points, half anomalous: >1M positives, so several search chunks."""
    rng = np.random.default_rng(8)
    labels = [(rng.random(112_896) < 0.5).astype(np.uint8) for _ in range(20)]
    scores = [(np.round(rng.random(lab.size) * 1000) / 1000 + 0.05 * lab).astype(np.float32) for lab in labels]
    ref = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert abs(point_auroc(labels, scores) - ref) < 1e-6
