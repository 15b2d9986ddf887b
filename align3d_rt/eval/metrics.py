"""Evaluation metrics (torch-free): object AUROC/AP, exact point AUROC, AUPRO, grid helpers.

Undefined metrics (one class only, no anomalous region, ...) return ``nan`` and emit a
:class:`MetricUndefinedWarning` that names the reason; they never raise.

Two localisation protocols (DESIGN.md, Evaluation):

- reference (:func:`grid_metrics`): point scores are written onto the organized grid (invalid
  cells 0), each grid is Gaussian-blurred (sigma 4, scipy defaults: ``mode='reflect'``,
  ``truncate=4.0``, as the PointAD code calls ``gaussian_filter(map, sigma=4)``), and P-R / P-P
  are computed over *all* grid cells, background included. The GT mask is the point labels on
  the grid (invalid cells normal).
- per point (:func:`per_point_metrics`): valid points only, raw scores, no blur. P-R is the point
  AUROC; P-P is AUPRO where the GT regions are the 8-connected components of the anomalous
  points on the organized grid (anomalous points only exist at valid cells, so regions never
  bridge through invalid cells) and only valid points count (the score range, the normals and
  the region pixels). Unorganized clouds (no grid, e.g. Real3D-AD) get P-P = nan.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from align3d_rt.eval.metrics_aupro import AuproKind, MetricUndefinedWarning, aupro, undefined
from align3d_rt.scoring import BLUR_SIGMA, blur_grid, points_to_grid

__all__ = [
    "MetricUndefinedWarning", "aupro", "blur_grid", "grid_metrics", "map_metrics", "object_ap", "object_auroc",
    "per_point_metrics", "point_auroc", "points_to_grid",
]



def _object_inputs(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                   metric: str) -> tuple[np.ndarray, np.ndarray] | float:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{metric}: {y.size} labels but {s.size} scores")
    if np.isnan(s).any():
        raise ValueError(f"{metric}: scores contain NaN")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{metric}: labels must be 0/1")
    classes = np.unique(y)
    if classes.size < 2:
        which = "no samples" if classes.size == 0 else f"only class {int(classes[0])} present"
        return undefined(metric, which)
    return y, s


def object_auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Object-level AUROC (O-R) via scikit-learn; nan (warned) when only one class is present."""
    got = _object_inputs(labels, scores, "object AUROC")
    return got if isinstance(got, float) else float(roc_auc_score(*got))


def object_ap(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Object-level average precision (O-A) via scikit-learn; nan (warned) with one class only.

    (AP with no anomalous sample is meaningless; with no normal sample it is trivially 1, which
    scikit-learn would report - both are returned as nan so that they cannot be averaged in.)
    """
    got = _object_inputs(labels, scores, "object AP")
    return got if isinstance(got, float) else float(average_precision_score(*got))


def point_auroc(labels_list: Sequence[np.ndarray], scores_list: Sequence[np.ndarray]) -> float:
    """Exact AUROC over the concatenation of many samples' points (ties count one half).

    Equal to ``roc_auc_score(concat(labels), concat(scores))``, computed as the Mann-Whitney
    statistic: the scores are split by label into two preallocated arrays in the score dtype
    (float32 for float32 input), sorted in place, and every anomalous score counts the normal
    scores below it (+1/2 for equal ones) with ``searchsorted`` in chunks; the counts are exact
    integers. Peak extra memory ~ 4 bytes per point for float32 scores (300 samples x 112,896
    points: ~136 MB) plus ~16 MB of chunk temporaries. nan (warned) when one class is missing.
    """
    if len(labels_list) != len(scores_list):
        raise ValueError(f"point AUROC: {len(labels_list)} label arrays but {len(scores_list)} score arrays")
    n_pos = n_neg = 0
    dtype = np.dtype(np.float32)
    for i, (lab, sc) in enumerate(zip(labels_list, scores_list, strict=True)):
        if np.shape(lab) != np.shape(sc):
            raise ValueError(f"point AUROC: sample {i} has labels {np.shape(lab)} but scores {np.shape(sc)}")
        k = int(np.count_nonzero(lab))
        n_pos += k
        n_neg += int(np.size(lab)) - k
        sdt = np.asarray(sc).dtype
        dtype = np.promote_types(dtype, sdt if np.issubdtype(sdt, np.floating) else np.float64)
    if n_pos == 0 or n_neg == 0:
        return undefined("point AUROC", "no anomalous point" if n_pos == 0 else "no normal point")
    pos = np.empty(n_pos, dtype)
    neg = np.empty(n_neg, dtype)
    a = b = 0
    for i, (lab, sc) in enumerate(zip(labels_list, scores_list, strict=True)):
        mask = np.asarray(lab).ravel() != 0
        sc = np.asarray(sc).ravel()
        if np.isnan(sc).any():
            raise ValueError(f"point AUROC: sample {i} scores contain NaN")
        p = sc[mask]
        pos[a:a + p.size] = p
        a += p.size
        q = sc[~mask]
        neg[b:b + q.size] = q
        b += q.size
    pos.sort()
    neg.sort()
    twice_u = 0  # 2 * (count of neg < pos) + count of ties, exact in int64
    chunk = 1 << 20
    for start in range(0, n_pos, chunk):
        part = pos[start:start + chunk]
        below = np.searchsorted(neg, part, side="left")
        upto = np.searchsorted(neg, part, side="right")
        twice_u += int(below.sum()) + int(upto.sum())
    return float(twice_u / (2.0 * n_pos * n_neg))


def _check_samples(scores_list: Sequence[np.ndarray], labels_list: Sequence[np.ndarray],
                   grid_index_list: Sequence[np.ndarray | None] | None,
                   grid_shape_list: Sequence[tuple[int, int] | None] | None) -> int:
    n = len(scores_list)
    if len(labels_list) != n or (grid_index_list is not None and len(grid_index_list) != n) \
            or (grid_shape_list is not None and len(grid_shape_list) != n):
        raise ValueError("scores, labels, grid_index and grid_shape lists must have one entry per sample")
    return n


def grid_metrics(scores_list: Sequence[np.ndarray], labels_list: Sequence[np.ndarray],
                 grid_index_list: Sequence[np.ndarray | None], grid_shape_list: Sequence[tuple[int, int] | None],
                 sigma: float = BLUR_SIGMA, fpr_limit: float = 0.3, num_thresholds: int = 200,
                 kind: AuproKind = "paper") -> dict[str, float]:
    """Reference protocol: {'auroc': P-R, 'aupro': P-P} over blurred organized grids (all cells).

    Per sample: scores (N,) and labels (N,) of the valid points, grid_index (N,) flat indices,
    grid_shape (H,W). The blurred grids are kept as float32 (4 bytes per cell; 300 samples of
    336x336: ~136 MB) and masks as uint8.
    """
    n = _check_samples(scores_list, labels_list, grid_index_list, grid_shape_list)
    maps: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for i in range(n):
        idx, shape = grid_index_list[i], grid_shape_list[i]
        if idx is None or shape is None:
            raise ValueError(f"grid_metrics: sample {i} has no organized grid (use per_point_metrics)")
        maps.append(blur_grid(points_to_grid(scores_list[i], idx, shape), sigma))
        masks.append(points_to_grid(np.asarray(labels_list[i]) > 0, idx, shape).astype(np.uint8))
    return map_metrics(maps, masks, fpr_limit=fpr_limit, num_thresholds=num_thresholds, kind=kind)


def map_metrics(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = 0.3,
                num_thresholds: int = 200, kind: AuproKind = "paper") -> dict[str, float]:
    """{'auroc', 'aupro'} over every cell of ready score maps (H,W) against 0/1 masks (H,W)."""
    return {
        "auroc": point_auroc([m.ravel() for m in masks], [s.ravel() for s in maps]),
        "aupro": aupro(list(masks), list(maps), fpr_limit=fpr_limit, num_thresholds=num_thresholds, kind=kind)
        if len(maps) else undefined("AUPRO", "no samples"),
    }


def per_point_metrics(scores_list: Sequence[np.ndarray], labels_list: Sequence[np.ndarray],
                      grid_index_list: Sequence[np.ndarray | None] | None = None,
                      grid_shape_list: Sequence[tuple[int, int] | None] | None = None,
                      fpr_limit: float = 0.3, num_thresholds: int = 200,
                      kind: AuproKind = "paper") -> dict[str, float]:
    """True per-point protocol: {'auroc': point AUROC over valid points, 'aupro': per-point AUPRO}.

    No blur, no background cells. AUPRO regions are the 8-connected components of the anomalous
    points on each sample's organized grid, counted over valid points only; it is nan (warned)
    when a sample has no grid (unorganized clouds).
    """
    n = _check_samples(scores_list, labels_list, grid_index_list, grid_shape_list)
    result = {"auroc": point_auroc([np.asarray(x).ravel() for x in labels_list],
                                   [np.asarray(x).ravel() for x in scores_list])}
    if grid_index_list is None or grid_shape_list is None or n == 0 \
            or any(g is None for g in grid_index_list) or any(s is None for s in grid_shape_list):
        result["aupro"] = undefined("per-point AUPRO", "a sample has no organized grid to define regions")
        return result
    masks, maps, valid = [], [], []
    for i in range(n):
        idx, shape = grid_index_list[i], grid_shape_list[i]
        assert idx is not None and shape is not None  # every sample has a grid (checked above)
        maps.append(points_to_grid(scores_list[i], idx, shape))
        masks.append(points_to_grid(np.asarray(labels_list[i]) > 0, idx, shape).astype(np.uint8))
        valid.append(points_to_grid(np.ones(np.size(idx), np.float32), idx, shape) > 0)
    result["aupro"] = aupro(masks, maps, fpr_limit=fpr_limit, num_thresholds=num_thresholds,
                            kind=kind, valid=valid)
    return result
