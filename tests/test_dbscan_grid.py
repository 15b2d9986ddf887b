"""Issue #13 item 5: the organized-grid DBSCAN gives Open3D's labels (so the same largest cluster)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from align3d_rt.data import grid as gridlib
from align3d_rt.data import mvtec3d
from align3d_rt.data.dbscan_grid import dbscan_labels_grid

EPS, MIN = mvtec3d.DBSCAN_EPS, mvtec3d.DBSCAN_MIN_POINTS


def _open3d_labels(xyz: np.ndarray, valid: np.ndarray) -> np.ndarray:
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[valid].astype(np.float64)))
    return np.asarray(cloud.cluster_dbscan(eps=EPS, min_points=MIN, print_progress=False))


def _patches(n: int, pixel: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Several surfaces at different depths, a sparse (every 4th row) strip, scattered noise, holes."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:n, 0:n].astype(np.float64) * pixel
    z = 0.3 + 0.004 * np.sin(u * 50 + seed)
    z[:, n // 3: n // 3 + 4] += 0.03          # a step splits the surface
    z[n // 2:, 2 * n // 3:] += 0.012           # a raised block touching the rest only at its border
    xyz = np.stack([u, v, z], -1)
    noise = rng.random((n, n)) < 0.01
    xyz[noise] += rng.normal(0, 0.03, (int(noise.sum()), 3))
    valid = rng.random((n, n)) > 0.05
    valid[: n // 5] &= (np.arange(n // 5) % 4 == 0)[:, None]  # sparse rows: border and noise points
    return xyz.astype(np.float32), valid


@pytest.mark.parametrize("n, pixel, seed", [(90, 0.0006, 0), (120, 0.0004, 1), (100, 0.0015, 2)])
def test_labels_equal_open3d_on_generated_grids(n: int, pixel: float, seed: int) -> None:
    xyz, valid = _patches(n, pixel, seed)
    ref = _open3d_labels(xyz, valid)
    got = dbscan_labels_grid(xyz, valid, EPS, MIN)
    assert ref.max() >= 1 and (ref == -1).any()  # several clusters and noise: the test can tell them apart
    np.testing.assert_array_equal(got, ref)


def test_labels_equal_open3d_on_generated_scans(synthetic_root: Path) -> None:
    for tiff in sorted(synthetic_root.glob("*/test/*/xyz/*.tiff"))[:3]:
        xyz = mvtec3d.read_xyz_tiff(tiff)
        valid = mvtec3d.remove_plane(xyz, gridlib.valid_mask(xyz))
        np.testing.assert_array_equal(dbscan_labels_grid(xyz, valid, EPS, MIN), _open3d_labels(xyz, valid))


@pytest.mark.parametrize("label", ["hole", "combined"])
def test_labels_equal_open3d_on_real_tire_grids(label: str, shared_tire_root: Path,
                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """xyz grids built from the real tire masks (as test_data_tire does), 800x600 full resolution."""
    from align3d_rt.data.synthetic import mvtec_from_real_masks

    root = mvtec_from_real_masks(shared_tire_root, tmp_path_factory.mktemp(f"tire_{label}"), seed=0, max_per_label=1,
                                 n_train=0, n_validation=0)
    tiff = next((root / "tire" / "test" / label / "xyz").glob("*.tiff"))
    xyz = mvtec3d.read_xyz_tiff(tiff)
    valid = mvtec3d.remove_plane(xyz, gridlib.valid_mask(xyz))
    assert valid.sum() > 100_000
    np.testing.assert_array_equal(dbscan_labels_grid(xyz, valid, EPS, MIN), _open3d_labels(xyz, valid))


@pytest.mark.parametrize("n, pixel, seed", [(120, 0.0004, 1), (100, 0.0015, 2)])
def test_dense_and_sparse_scans_avoid_open3d(n: int, pixel: float, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #21: every scan (dense or sparse) gets the exact, reproducible labels, never Open3D's."""
    xyz, valid = _patches(n, pixel, seed)
    expected = mvtec3d.largest_cluster_open3d(xyz, valid)

    def no_open3d(*a: object) -> None:
        raise AssertionError("step 3 must not go through Open3D's DBSCAN")

    monkeypatch.setattr(mvtec3d, "largest_cluster_open3d", no_open3d)
    got = mvtec3d.largest_cluster(xyz, valid)
    assert 0 < got.sum() < valid.sum()
    np.testing.assert_array_equal(got, expected)
