"""Per-part decisions from a calibration: normalised scores, defect regions, ok/reject
(docs/runtime-spec.md 13.3-13.5). numpy + scipy + a numba grid search (kernels/nearest.py), torch-free;
the C++ inspector implements the same rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from align3d_rt.artifacts.calibration import Calibration
from align3d_rt.errors import InputError


def normalize(x: Any, threshold: float, lo: float, hi: float) -> Any:
    """``clip(0.5 + (x - t) / (hi - lo), 0, 1)`` in f64 (a score at the threshold maps to 0.5)."""
    value = 0.5 + (np.asarray(x, dtype=np.float64) - float(threshold)) / (float(hi) - float(lo))
    out = np.clip(value, 0.0, 1.0)
    return float(out) if out.ndim == 0 else out


def _d2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances of rows in f64, ``(ax-bx)^2 + (ay-by)^2 + (az-bz)^2`` in that order."""
    d = a - b
    return d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]


def point_spacing(points: np.ndarray) -> float:
    """Spacing h (13.3 step 1): sqrt of the lower median of the nearest-neighbour squared distances
    over the distinct point locations; 0 when fewer than 2 distinct locations.

    Exact grid search (``kernels.nearest``) over all points, skipping same-location neighbours and
    keeping one value per location; ``point_spacing_distinct`` (np.unique + k-d tree) where the grid
    does not fit (non-finite coordinates, extreme outliers). Both give the same h."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3).astype(np.float64)
    if len(pts) < 2 or not np.isfinite(pts).all():
        return point_spacing_distinct(pts)
    from align3d_rt.kernels.nearest import nearest_other_d2

    found = nearest_other_d2(pts)
    if found is None:
        return point_spacing_distinct(pts)
    d2, first = found
    per_location = d2[first]  # one value per distinct location
    mid = (len(per_location) - 1) // 2
    return float(np.sqrt(np.partition(per_location, mid)[mid]))


def point_spacing_distinct(points: np.ndarray) -> float:
    """``point_spacing`` by its definition: np.unique over the rows, then a k-d tree 2-NN query."""
    from scipy.spatial import cKDTree

    unique = np.unique(np.asarray(points, dtype=np.float32).reshape(-1, 3), axis=0).astype(np.float64)
    if len(unique) < 2:
        return 0.0
    _, idx = cKDTree(unique).query(unique, k=2)
    # the nearest other location: column 1 (column 0 is the point itself, distance 0, as rows are distinct)
    nearest = np.where(idx[:, 0] == np.arange(len(unique)), idx[:, 1], idx[:, 0])
    d2 = np.sort(_d2(unique, unique[nearest]))
    return float(np.sqrt(d2[(len(d2) - 1) // 2]))


@dataclass
class Region:
    """One defect region (13.3 step 6); ``indices``: its points, ascending (not part of the JSON)."""

    id: int
    num_points: int
    seed_index: int
    centroid: tuple[float, float, float]
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    extent: tuple[float, float, float]
    area: float
    max_score: float
    mean_score: float
    max_score_normalized: float
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "num_points": self.num_points, "seed_index": self.seed_index,
                "centroid": list(self.centroid), "bbox_min": list(self.bbox_min), "bbox_max": list(self.bbox_max),
                "extent": list(self.extent), "area": self.area, "max_score": self.max_score,
                "mean_score": self.mean_score, "max_score_normalized": self.max_score_normalized}


@dataclass
class RegionSet:
    """Regions of one part: ``labels`` (N,) int32 region id per point (0 = none), regions by id."""

    labels: np.ndarray
    regions: list[Region]
    spacing: float

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.regions]


def _components(xyz: np.ndarray, r: float) -> np.ndarray:
    """Connected-component label of each row: rows linked when their squared distance <= r*r."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(xyz)
    r2 = r * r
    # candidates slightly beyond r, then the exact f64 test of 13.3 step 4 (r = 0: identical locations only)
    pairs = cKDTree(xyz).query_pairs(r * (1.0 + 1e-9) + 1e-300, output_type="ndarray")
    if len(pairs):
        pairs = pairs[_d2(xyz[pairs[:, 0]], xyz[pairs[:, 1]]) <= r2]
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])) if len(pairs) else
                       (np.zeros(0, np.int8), (np.zeros(0, np.int64), np.zeros(0, np.int64))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def find_regions(points: np.ndarray, fused: np.ndarray, threshold: float, min_points: int,
                 spacing_factor: float, lo: float, hi: float) -> RegionSet:
    """Regions of hot points (fused > threshold) linked within ``spacing_factor * h`` (13.3)."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    scores = np.asarray(fused, dtype=np.float32).reshape(-1)
    n = len(pts)
    h = point_spacing(pts)
    r = float(spacing_factor) * h
    labels = np.zeros(n, dtype=np.int32)
    hot = np.flatnonzero(scores.astype(np.float64) > float(threshold))
    if len(hot) == 0:
        return RegionSet(labels, [], h)
    # identical locations always link (distance 0), so components are found over the distinct hot
    # locations (a cloud with many repeated points stays linear in memory) and mapped back
    locations, which = np.unique(pts[hot].astype(np.float64), axis=0, return_inverse=True)
    comp = _components(locations, r)[which.reshape(-1)]
    order = np.argsort(comp, kind="stable")  # hot indices grouped by component, ascending inside each
    sizes = np.bincount(comp)
    ends = np.cumsum(sizes)
    regions = [_region(hot[order[ends[c] - sizes[c]:ends[c]]], pts, scores, h, threshold, lo, hi)
               for c in np.flatnonzero(sizes >= int(min_points))]
    regions.sort(key=lambda g: (-g.max_score, -g.num_points, g.seed_index))
    for rid, region in enumerate(regions, start=1):
        region.id = rid
        labels[region.indices] = rid
    return RegionSet(labels, regions, h)


def _region(idx: np.ndarray, pts: np.ndarray, scores: np.ndarray, h: float, threshold: float,
            lo: float, hi: float) -> Region:
    """The fields of one region from its point indices (ascending)."""
    p = pts[idx].astype(np.float64)
    s = scores[idx]
    k = len(idx)
    seed = int(idx[int(np.argmax(s))])  # argmax: the first (lowest index) on ties
    centroid = np.cumsum(p, axis=0)[-1] / k  # f64 sums in index order
    lo3, hi3 = p.min(axis=0), p.max(axis=0)
    max_score = float(s.max())
    return Region(
        id=0, num_points=k, seed_index=seed, centroid=_t3(centroid), bbox_min=_t3(lo3), bbox_max=_t3(hi3),
        extent=_t3(hi3 - lo3), area=float(k * h * h), max_score=max_score,
        mean_score=float(np.cumsum(s.astype(np.float64))[-1] / k),
        max_score_normalized=float(normalize(max_score, threshold, lo, hi)), indices=idx.astype(np.int64),
    )


def _t3(v: np.ndarray) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


@dataclass
class PartDecision:
    """The decision for one part (13.4): ``normalized`` (N,) f32 point scores, ``regions``."""

    decision: str
    object_score: float
    object_score_normalized: float
    normalized: np.ndarray
    regions: RegionSet

    def to_json(self) -> dict[str, Any]:
        """The per-sample keys of 13.5 (``object_score`` itself is the sample's own key)."""
        return {"decision": self.decision, "object_score_normalized": self.object_score_normalized,
                "regions": self.regions.to_json(), "num_regions": len(self.regions.regions)}


def decide(points: np.ndarray, fused: np.ndarray, object_score: float, cal: Calibration) -> PartDecision:
    """Decision, normalised scores and regions of one part; a non-finite input raises InputError."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    scores = np.asarray(fused, dtype=np.float32).reshape(-1)
    if len(pts) != len(scores):
        raise InputError(f"{len(pts)} points but {len(scores)} point scores")
    if not np.isfinite(float(object_score)):
        raise InputError(f"object score is not finite ({float(object_score)}); no decision")
    if not np.isfinite(scores).all():
        raise InputError(f"{int((~np.isfinite(scores)).sum())} point score(s) are not finite; no decision")
    if not np.isfinite(pts).all():
        raise InputError("point coordinates are not finite; no decision")
    o, p = cal.object, cal.point
    score = float(object_score)
    return PartDecision(
        decision="reject" if score > o.threshold else "ok",
        object_score=score,
        object_score_normalized=float(normalize(score, o.threshold, o.lo, o.hi)),
        normalized=np.asarray(normalize(scores, p.threshold, p.lo, p.hi), dtype=np.float32).reshape(-1),
        regions=find_regions(pts, scores, p.threshold, cal.min_points, cal.spacing_factor, p.lo, p.hi),
    )
