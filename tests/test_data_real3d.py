"""Real3D-AD reader: .pcd + gt .txt, exact 112,896 points, labels follow, fast FPS."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from align3d_rt.data import readers, real3d
from align3d_rt.data.fps import farthest_point_sampling, farthest_point_sampling_naive
from align3d_rt.data.synthetic_real3d import write_gt_txt, write_pcd
from align3d_rt.errors import InputError

N = real3d.NUM_POINTS


def test_fps_matches_naive() -> None:
    rng = np.random.default_rng(0)
    for n, k in ((1000, 1000), (2500, 300), (4000, 1)):
        pts = rng.random((n, 3))
        np.testing.assert_array_equal(farthest_point_sampling(pts, k), farthest_point_sampling_naive(pts, k))
    pts = rng.normal(size=(2000, 3))
    np.testing.assert_array_equal(farthest_point_sampling(pts, 500, start=7),
                                  farthest_point_sampling_naive(pts, 500, 7))


def _write(tmp: Path, pts: np.ndarray, labels: np.ndarray, stem: str) -> tuple[Path, Path]:
    pcd, txt = tmp / "obj" / "test" / f"{stem}.pcd", tmp / "obj" / "gt" / f"{stem}.txt"
    write_pcd(pcd, pts)
    write_gt_txt(txt, pts, labels)
    return pcd, txt


def _labelled_cloud(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * 10
    return pts, (np.linalg.norm(pts - pts[0], axis=1) < 8).astype(np.uint8)


def test_larger_cloud_fps_to_exact_count(tmp_path: Path) -> None:
    pts, labels = _labelled_cloud(N + 20000, 1)
    pcd, txt = _write(tmp_path, pts, labels, "7_bulge")
    s = real3d.load_real3d_sample(pcd, txt, label_name="bulge")
    assert s.points.shape == (N, 3) and s.point_labels.shape == (N,) and s.meta["original_points"] == N + 20000
    # each kept point is an input point and keeps that point's label
    from scipy.spatial import cKDTree

    gt = np.loadtxt(txt)
    dist, idx = cKDTree(gt[:, :3]).query(s.points.astype(np.float64))
    assert dist.max() < 1e-4
    np.testing.assert_array_equal(s.point_labels, gt[idx, 3].astype(np.uint8))
    assert len(np.unique(s.points, axis=0)) == N


def test_smaller_cloud_interpolated_to_exact_count(tmp_path: Path) -> None:
    pts, labels = _labelled_cloud(30000, 2)
    pcd, txt = _write(tmp_path, pts, labels, "8_sink_cut")
    s = real3d.load_real3d_sample(pcd, txt, label_name="sink")
    assert s.points.shape == (N, 3) and s.point_labels.sum() > labels.sum()
    gt = np.loadtxt(txt)
    np.testing.assert_allclose(s.points[:30000], gt[:, :3], atol=1e-5)  # originals kept first
    np.testing.assert_array_equal(s.point_labels[:30000], labels)
    # an added point lies between its source and a neighbour and takes the source label
    src, nbr = real3d.upsample_indices(gt[:, :3].astype(np.float32), N)
    mid = 0.5 * (gt[src, :3] + gt[nbr, :3])
    np.testing.assert_allclose(s.points[30000:], mid, atol=1e-4)
    np.testing.assert_array_equal(s.point_labels[30000:], labels[src])


def test_tiny_cloud_and_exact_size() -> None:
    pts = np.random.default_rng(3).random((N, 3)).astype(np.float32)
    out, lab, _ = real3d.resample(pts, np.zeros(N, np.uint8))
    assert out is pts
    out, lab, _ = real3d.resample(pts[:5], np.array([0, 1, 0, 0, 1], np.uint8))
    assert out.shape == (N, 3) and lab.shape == (N,)


def test_listing_and_loading_generated_layout(tmp_path: Path) -> None:
    from align3d_rt.data.synthetic import generate_real3d_layout

    root = generate_real3d_layout(tmp_path, categories=["capsule", "cube"], n_train=1, n_test=3, n_points=5000)
    assert readers.list_categories("real3d", root) == ["capsule", "cube"]
    refs = readers.list_samples("real3d", root, "cube", "test")
    assert [r.label_name for r in refs] == ["good", "bulge", "sink"]
    samples = [r.load() for r in refs]
    assert all(s.num_points == N for s in samples)
    assert not samples[0].point_labels.any() and samples[1].point_labels.any() and samples[2].is_anomalous
    train = readers.list_samples("real3d", root, "cube", "train")
    assert [r.path.name for r in train] == ["0_template.pcd"] and train[0].load().label_name == "good"
    with pytest.raises(InputError, match="validation"):
        readers.list_samples("real3d", root, "cube", "validation")


def test_good_without_gt_and_anomalous_without_gt(tmp_path: Path) -> None:
    pts, _ = _labelled_cloud(2000, 4)
    pcd = tmp_path / "3_good.pcd"
    write_pcd(pcd, pts)
    s = real3d.load_real3d_sample(pcd, tmp_path / "missing.txt", label_name="good", num_points=None)
    assert s.num_points == 2000 and not s.point_labels.any()
    with pytest.raises(InputError, match="missing.txt"):
        real3d.load_real3d_sample(pcd, tmp_path / "missing.txt", label_name="bulge")


def test_load_point_file_pcd_ply_npy(tmp_path: Path) -> None:
    pts, _ = _labelled_cloud(3000, 5)
    write_pcd(tmp_path / "a.pcd", pts)
    write_pcd(tmp_path / "a.ply", pts)
    np.save(tmp_path / "a.npy", pts.astype(np.float32))
    for name in ("a.pcd", "a.ply", "a.npy"):
        s = readers.load_point_file(tmp_path / name)
        assert s.num_points == 3000 and s.points.dtype == np.float32
        np.testing.assert_allclose(s.points, pts, atol=1e-4)
    assert readers.load_point_file(tmp_path / "a.npy", num_points=N).num_points == N


@pytest.mark.heavy
def test_fps_500k_to_real3d_size() -> None:
    """Full size: 500k points down to 112,896 distinct ones (its speed: bench/test_bench_fps.py)."""
    rng = np.random.default_rng(0)
    d = rng.normal(size=(500_000, 3))
    pts = d / np.linalg.norm(d, axis=1, keepdims=True)
    idx = farthest_point_sampling(pts, N)
    assert len(np.unique(idx)) == N
