"""Synthetic Real3D-AD layout: closed surfaces sampled as .pcd (Open3D) with "x y z label" gt txt files.

Layout: <cls>/train/<id>_template.pcd, <cls>/test/<id>_<good|bulge|sink>[_cut].pcd,
<cls>/gt/<stem>.txt (written for every test sample; good samples hold all-zero labels).
Units are millimetres like Real3D-AD (objects ~30 mm). A bulge/sink moves the points within ~2
sigma of a surface point outward/inward along the surface normal by ~10% of the object size;
'_cut' samples keep only the part of the surface on one side of a random plane (partial scan).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from align3d_rt.data.synthetic_shapes import sample_rng as _rng

REAL3D_SHAPES = ("ellipsoid", "torus", "capsule", "cube")
TEST_PATTERN = ("good", "bulge", "sink", "bulge_cut", "good_cut", "sink_cut")


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def sample_surface(shape: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(points (n,3), outward unit normals (n,3)) on the surface of a ~30 mm object."""
    if shape == "ellipsoid":
        axes = np.array([16.0, 11.0, 8.0])
        pts = _unit_vectors(n, rng) * axes
        return pts, _normalize(pts / axes ** 2)
    if shape == "torus":
        u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
        big, small = 11.0, 4.5
        ring = np.stack([big * np.cos(u), big * np.sin(u), np.zeros(n)], axis=1)
        normal = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], axis=1)
        return ring + small * normal, normal
    if shape == "capsule":  # cylinder (radius 7, length 18) with hemispherical caps
        radius, half = 7.0, 9.0
        side = rng.random(n) < 0.56  # the cylinder's share of the total area
        phi = rng.uniform(0, 2 * np.pi, n)
        normal = _unit_vectors(n, rng)
        normal[side] = np.stack([np.zeros(side.sum()), np.cos(phi[side]), np.sin(phi[side])], axis=1)
        axis_x = np.where(side, rng.uniform(-half, half, n), np.where(normal[:, 0] >= 0, half, -half))
        pts = normal * radius
        pts[:, 0] += axis_x
        return pts, normal
    if shape == "cube":  # superquadric |x/a|^6 + |y/b|^6 + |z/c|^6 = 1
        axes, p = np.array([12.0, 10.0, 8.0]), 6.0
        d = _unit_vectors(n, rng)
        pts = d * ((np.abs(d) ** p).sum(axis=1) ** (-1.0 / p))[:, None] * axes
        q = pts / axes
        return pts, _normalize(np.sign(q) * np.abs(q) ** (p - 1) / axes)
    raise ValueError(f"unknown Real3D-style shape {shape!r}; known: {', '.join(REAL3D_SHAPES)}")


def make_real3d_sample(shape: str, label: str, n_points: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(points (M,3) float64, labels (M,) uint8) for label 'template', 'good', 'bulge', 'sink' (+ '_cut')."""
    pts, normals = sample_surface(shape, n_points, rng)
    labels = np.zeros(len(pts), np.uint8)
    kind = label.removesuffix("_cut")
    if kind in ("bulge", "sink"):
        centre = pts[rng.integers(len(pts))]
        sigma = rng.uniform(1.8, 2.4)
        dist = np.linalg.norm(pts - centre, axis=1)
        amp = rng.uniform(2.5, 3.5) * (1 if kind == "bulge" else -1)
        pts = pts + normals * (amp * np.exp(-(dist ** 2) / (2 * sigma ** 2)))[:, None]
        labels = (dist < 2.0 * sigma).astype(np.uint8)
    pts = pts + rng.normal(0.0, 0.02, pts.shape)
    if label.endswith("_cut"):
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        proj = pts @ normal
        keep = proj < np.quantile(proj, 0.75)
        if labels.any():  # never cut the anomaly away
            keep |= labels.astype(bool)
        pts, labels = pts[keep], labels[keep]
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return pts @ rot.T + rng.uniform(-5, 5, size=3), labels


def write_pcd(path: Path, points: np.ndarray) -> None:
    """Write points as an Open3D .pcd, atomically."""
    import open3d as o3d

    from align3d_rt.io_utils import atomic_path

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(Path(tmp), cloud, write_ascii=False):
            raise OSError(f"{path}: Open3D could not write the point cloud")


def write_gt_txt(path: Path, points: np.ndarray, labels: np.ndarray) -> None:
    """Write Real3D-AD style ground truth: one "x y z label" line per point."""
    from align3d_rt.io_utils import atomic_path

    table = np.column_stack([np.asarray(points, np.float64), np.asarray(labels, np.float64)])
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, fmt=["%.6f", "%.6f", "%.6f", "%d"], delimiter=" ")


def generate_real3d_layout(root: str | os.PathLike[str], categories: list[str] | tuple[str, ...] | None = None,
                           n_train: int = 1, n_test: int = 4, n_points: int = 30000, seed: int = 0) -> Path:
    """Write a synthetic dataset in the Real3D-AD layout under ``root`` and return ``root``.

    Test labels cycle through TEST_PATTERN (good, bulge, sink, bulge_cut, good_cut, sink_cut);
    ``n_points`` points per cloud before cutting (test clouds vary by +-10%).
    """
    root = Path(root)
    cats = list(categories) if categories else list(REAL3D_SHAPES)
    for cat in cats:
        if cat not in REAL3D_SHAPES:
            raise ValueError(f"unknown Real3D-style category {cat!r}; known: {', '.join(REAL3D_SHAPES)}")
    for cat in cats:
        for i in range(n_train):
            pts, _ = make_real3d_sample(cat, "template", n_points, _rng(seed, cat, "train", i))
            write_pcd(root / cat / "train" / f"{i}_template.pcd", pts)
        for i in range(n_test):
            label = TEST_PATTERN[i % len(TEST_PATTERN)]
            rng = _rng(seed, cat, "test", i)
            n = int(n_points * rng.uniform(0.9, 1.1))
            pts, labels = make_real3d_sample(cat, label, n, rng)
            stem = f"{100 + i}_{label}"
            write_pcd(root / cat / "test" / f"{stem}.pcd", pts)
            write_gt_txt(root / cat / "gt" / f"{stem}.txt", pts, labels)
    return root
