"""Largest DBSCAN cluster of an organized scan without materialising every neighbourhood (spec §4.2 step 3).

The neighbour predicate is exact and specified: points p, q (f64 from f32) are neighbours when
``((px-qx)² + (py-qy)²) + (pz-qz)² <= eps·eps`` (each a separate f64 operation), so the labels are a
function of the input alone (no tree-order or thread effects) and the C++ inspector reproduces them.
Candidate searches (cKDTree, voxels) only ever propose supersets, filtered by that predicate.

Open3D's ``cluster_dbscan`` first stores the eps-neighbour list of every point (for a full-resolution
MVTec scan, hundreds of neighbours x hundreds of thousands of points: GBs and tens of seconds), then
expands clusters in point order. This computes the same labels from counts and a few short lists:

1. core points: neighbour *counts* only (``cKDTree.query_ball_point(return_length=True)`` at radii
   eps·(1∓1e-6): a point whose two counts straddle min_points gets its exact list); the point itself
   counts, as in Open3D; core = count >= min_points.
2. clusters of core points: components of the graph "core-core within eps". Start from the edges
   between 8-adjacent grid cells (the organized grid gives most edges for free), then check every core
   point's count of core neighbours against its count inside its own component; where they differ an
   edge to another component is missing, so those few points' lists are fetched, the edges added, and
   the check repeated. It ends when no core point has a core neighbour outside its component, which is
   exactly the eps-connectivity DBSCAN uses.
3. cluster order: Open3D numbers clusters by their first core point in point order (its expansion
   loop), and a border (non-core) point joins the first cluster, in that order, that has a core point
   within eps. Border points have fewer than min_points neighbours, so their lists are short.

The result equals Open3D's on generated scans and grids built from the real tire masks (tests/test_dbscan_grid.py).
"""
from __future__ import annotations

import numpy as np

MARGIN = 1e-6  # relative radius margin of candidate searches (far above f64 rounding, far below any spacing)


def within(p: np.ndarray, q: np.ndarray, eps: float) -> np.ndarray:
    """The exact neighbour predicate, elementwise over (..., 3) f64 arrays."""
    dx, dy, dz = p[..., 0] - q[..., 0], p[..., 1] - q[..., 1], p[..., 2] - q[..., 2]
    return ((dx * dx + dy * dy) + dz * dz) <= eps * eps


def _exact_lists(tree: object, pts: np.ndarray, queries: np.ndarray, eps: float) -> list[np.ndarray]:
    """Per query index, the indices of tree points within eps by the exact predicate (sorted)."""
    out = []
    for q, near in zip(queries, tree.query_ball_point(pts[queries], eps * (1.0 + MARGIN)), strict=True):  # type: ignore[attr-defined]
        near = np.asarray(near, np.int64)
        out.append(np.sort(near[within(pts[q][None, :], tree.data[near], eps)]))  # type: ignore[attr-defined]
    return out


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _grid_edges(index: np.ndarray, pts_of: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Core-core pairs of 8-adjacent grid cells closer than eps. ``index`` (H,W): core id or -1."""
    h, w = index.shape
    out_a, out_b = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        a = index[0: h - dy, max(0, -dx): w - max(0, dx)]
        b = index[dy: h, max(0, dx): w - max(0, -dx)]
        both = (a >= 0) & (b >= 0)
        ia, ib = a[both], b[both]
        close = within(pts_of[ia], pts_of[ib], eps)
        out_a.append(ia[close])
        out_b.append(ib[close])
    return np.concatenate(out_a), np.concatenate(out_b)


def _pack(keys: np.ndarray) -> np.ndarray:
    k = keys + (1 << 20)  # cells of a metre-scale scan stay far inside +-2^20
    return (k[:, 0] << 42) | (k[:, 1] << 21) | k[:, 2]


class _Roots:
    """Union-find over component ids (only the few cross-component merges go through it)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


def dbscan_labels_grid(xyz: np.ndarray, valid: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """Spec §4.2 step 3 DBSCAN labels (-1 = noise; Open3D's numbering) of the valid cells of ``xyz``
    (H,W,3), row-major."""
    from scipy.spatial import cKDTree

    pts = np.ascontiguousarray(xyz[valid], dtype=np.float64)
    n = pts.shape[0]
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return labels
    # 1. core points. Voxels of side eps/sqrt(3): points sharing a voxel are within eps of each other, so a
    #    voxel with >= min_points points makes all of them core without any search.
    side = eps / np.sqrt(3.0) * (1.0 - 1e-9)
    if np.abs(pts).max() * (1.0 / side) >= (1 << 20) - 4:
        raise ValueError("dbscan_labels_grid: coordinates too large for the packed voxel keys (metres expected)")
    vkeys = np.floor(pts / side).astype(np.int64)
    uniq, voxel, vcount = np.unique(_pack(vkeys), return_inverse=True, return_counts=True)
    voxel = voxel.ravel()
    core = vcount[voxel] >= min_points
    tree = cKDTree(pts)
    sparse = np.flatnonzero(~core)
    if sparse.size:
        lo = tree.query_ball_point(pts[sparse], eps * (1.0 - MARGIN), return_length=True)
        core[sparse] = lo >= min_points
        below = sparse[lo < min_points]
        hi = tree.query_ball_point(pts[below], eps * (1.0 + MARGIN), return_length=True)
        unsure = below[hi >= min_points]
        for i, near in zip(unsure, _exact_lists(tree, pts, unsure, eps), strict=True):
            core[i] = near.size >= min_points
    core_ids = np.flatnonzero(core)
    if core_ids.size == 0:
        return labels
    core_pts = pts[core_ids]
    core_voxel = voxel[core_ids]
    # 2. components of core points: same voxel (star edges), 8-adjacent grid cells within eps, then the
    #    neighbouring voxels (within 2 voxels per axis) whose components differ are checked pair by pair.
    cell_core = np.full(valid.shape, -1, np.int64)
    cell_core[valid] = np.where(core, np.cumsum(core) - 1, -1)
    a, b = _grid_edges(cell_core, core_pts, eps)
    order = np.argsort(core_voxel, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(core_voxel[order]) != 0])
    head = np.repeat(order[starts], np.diff(np.r_[starts, order.size]))
    comp = _components(core_ids.size, np.r_[a, order], np.r_[b, head])
    core_voxels = core_voxel[order[starts]]                      # voxel ids holding core points (sorted)
    members = np.split(order, starts[1:])                        # core indices per such voxel
    vcomp = comp[order[starts]]
    ckeys = vkeys[core_ids[order[starts]]]
    packed = uniq[core_voxels]
    roots = _Roots()
    offsets = [(i, j, k) for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3) if (i, j, k) > (0, 0, 0)]
    for off in offsets:
        nb = _pack(ckeys + np.asarray(off, np.int64))
        pos = np.searchsorted(packed, nb)
        pos[pos >= packed.size] = 0
        hit = np.flatnonzero((packed[pos] == nb) & (vcomp[pos] != vcomp))
        for i in hit:
            j = int(pos[i])
            if roots.find(int(vcomp[i])) == roots.find(int(vcomp[j])):
                continue
            p, q = core_pts[members[i]], core_pts[members[j]]
            if within(p[:, None, :], q[None, :, :], eps).any():
                roots.union(int(vcomp[i]), int(vcomp[j]))
    if roots.parent:
        lut = np.arange(comp.max() + 1)
        for c in list(roots.parent):
            lut[c] = roots.find(c)
        comp = lut[comp]
    # 3. Open3D numbers clusters by their first core point in point order; a border point joins the first
    #    cluster, in that order, with a core point within eps.
    first = np.full(comp.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, comp, core_ids)
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    labels[core_ids] = rank[comp]
    border = np.flatnonzero(~core)
    if border.size:
        for i, near in zip(border, _exact_lists(tree, pts, border, eps), strict=True):
            near = near[core[near]]
            if near.size:
                labels[i] = int(rank[comp[np.searchsorted(core_ids, near)]].min())
    # renumber densely (merged components leave gaps)
    used = np.unique(labels[labels >= 0])
    remap = np.full(int(used.max()) + 1 if used.size else 1, -1, np.int64)
    remap[used] = np.arange(used.size)
    labels[labels >= 0] = remap[labels[labels >= 0]]
    return labels


def largest_cluster_grid(xyz: np.ndarray, valid: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """Validity mask keeping only the largest cluster (ties: the first in Open3D's numbering)."""
    return largest_label_mask(valid, dbscan_labels_grid(xyz, valid, eps, min_points))


def largest_label_mask(valid: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``valid`` narrowed to the most frequent non-negative label (ties: the lowest; noise never wins;
    all noise: nothing). ``labels`` follow ``valid``'s cells in row-major order."""
    out = np.zeros_like(valid)
    if labels.size == 0 or labels.max() < 0:
        return out
    out[valid] = labels == np.bincount(labels[labels >= 0]).argmax()
    return out
