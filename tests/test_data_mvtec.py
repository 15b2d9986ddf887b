"""MVTec 3D-AD reader and preprocessing on generated data (non-square, zeros, NaN, class-id masks)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.data import grid as gridlib
from align3d_rt.data import mvtec3d, readers


def test_list_categories_and_samples(synthetic_root: Path) -> None:
    cats = readers.list_categories("synthetic", synthetic_root)
    assert cats == sorted(cats) and "dome" in cats and len(cats) >= 4
    assert readers.list_categories("mvtec3d", synthetic_root) == cats
    train = readers.list_samples("synthetic", synthetic_root, "dome", "train")
    assert [r.path.name for r in train] == ["000.tiff", "001.tiff"] and {r.label_name for r in train} == {"good"}
    test = readers.list_samples("synthetic", synthetic_root, "dome", "test")
    assert [r.label_name for r in test] == sorted(r.label_name for r in test)
    assert {r.label_name for r in test} == {"good", "bump", "dent", "crack", "hole", "contamination"}
    assert test == readers.list_samples("synthetic", synthetic_root, "dome", "test")
    assert len(readers.list_samples("synthetic", synthetic_root, "dome", "validation")) == 1


def test_pad_resize_index_matches_pad_then_nearest() -> None:
    rng = np.random.default_rng(0)
    for h, w in ((180, 240), (800, 600), (336, 336), (123, 77)):
        img = rng.random((h, w)).astype(np.float32) + 1
        side, top, left = gridlib.square_pad(h, w)
        assert side % 100 == 0 and side >= max(h, w)
        padded = np.pad(img, ((top, side - h - top), (left, side - w - left)))
        src = np.minimum((np.arange(336) * (side / 336)).astype(int), side - 1)
        expected = padded[src][:, src]
        rows, cols = gridlib.pad_resize_index(h, w)
        np.testing.assert_array_equal(gridlib.gather(img, rows, cols), expected)


def test_pad_resize_matches_torch_nearest() -> None:
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(1).random((300, 300)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(img)[None, None], size=(336, 336), mode="nearest")[0, 0]
    rows, cols = gridlib.pad_resize_index(300, 300)
    np.testing.assert_array_equal(gridlib.gather(img, rows, cols), ref.numpy())


def _load(root: Path, cat: str, label: str) -> tuple[readers.SampleRef, object]:
    ref = [r for r in readers.list_samples("synthetic", root, cat, "test") if r.label_name == label][0]
    return ref, ref.load()


def test_load_defect_sample(synthetic_root: Path) -> None:
    ref, s = _load(synthetic_root, "box", "bump")
    assert s.grid_shape == (336, 336) and s.points.dtype == np.float32
    assert s.points.shape == (s.num_points, 3) and 1000 < s.num_points <= 336 * 336
    assert np.isfinite(s.points).all() and (s.points != 0).any(axis=1).all()
    assert s.grid_index.dtype == np.int64 and np.all(np.diff(s.grid_index) > 0)
    assert s.colors.shape == (s.num_points, 3) and 0 <= s.colors.min() and s.colors.max() <= 1
    assert s.point_labels.dtype == np.uint8 and set(np.unique(s.point_labels)) == {0, 1}
    assert 0 < s.point_labels.mean() < 0.2
    assert s.is_anomalous and s.label_name == "bump" and s.category == "box" and s.dataset == "synthetic"
    # labels follow the points: the anomalous points sit where the gt mask is, mapped like the xyz
    from PIL import Image

    gt = np.asarray(Image.open(ref.gt_path)) > 0
    rows, cols = gridlib.pad_resize_index(*gt.shape)
    expected = gridlib.gather(gt.astype(np.uint8), rows, cols).reshape(-1)[s.grid_index]
    np.testing.assert_array_equal(s.point_labels, expected)


def test_preprocessing_removes_plane_and_debris(synthetic_root: Path) -> None:
    import tifffile

    ref, s = _load(synthetic_root, "ring", "good")
    assert not s.point_labels.any() and s.is_anomalous is False
    xyz = tifffile.imread(ref.path)
    raw = xyz[gridlib.valid_mask(xyz)]
    assert s.num_points < 0.6 * raw.shape[0] * (336 * 336) / (300 * 300)  # background gone
    # all kept points form one compact object (debris blob and plane removed)
    centre = np.median(s.points, axis=0)
    assert np.linalg.norm(s.points[:, :2] - centre[:2], axis=1).max() < 0.06
    # the fitted background plane (from the border) is > 4 mm from every kept point (RANSAC drops < 5 mm)
    border = np.concatenate([xyz[:10].reshape(-1, 3), xyz[-10:].reshape(-1, 3)])
    border = border[gridlib.valid_mask(border)]
    a = np.c_[border[:, :2], np.ones(len(border))]
    coef, *_ = np.linalg.lstsq(a, border[:, 2], rcond=None)
    normal = np.array([coef[0], coef[1], -1.0])
    dist = np.abs(s.points @ normal + coef[2]) / np.linalg.norm(normal)
    assert dist.min() > 0.004


def test_preprocess_xyz_direct() -> None:
    from align3d_rt.data.synthetic import render_mvtec_sample
    from align3d_rt.data.synthetic_shapes import sample_rng

    xyz, _, _ = render_mvtec_sample("dome", "hole", (180, 240), sample_rng(5, "x"))
    grid = mvtec3d.preprocess_xyz(xyz)
    assert grid.shape == (336, 336, 3) and grid.dtype == np.float32
    assert 1000 < gridlib.valid_mask(grid).sum() < 336 * 336 // 2


def test_cache_reused_and_corrupt_cache_recomputed(synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = readers.list_samples("synthetic", synthetic_root, "cylinder", "validation")[0]
    first = ref.load()
    computed = mvtec3d.STATS["computed"]

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("preprocessing ran again")

    with monkeypatch.context() as m:
        m.setattr(mvtec3d, "preprocess_xyz", boom)
        second = ref.load()  # from the cache: preprocessing would raise
    assert mvtec3d.STATS["computed"] == computed
    np.testing.assert_array_equal(first.points, second.points)
    np.testing.assert_array_equal(first.colors, second.colors)
    cache = mvtec3d._cache_file(ref.path)
    assert cache.is_file() and not list(cache.parent.glob(".*"))  # no temporary leftovers
    cache.write_bytes(b"garbage")
    third = ref.load()
    assert mvtec3d.STATS["computed"] == computed + 1
    np.testing.assert_array_equal(first.points, third.points)
    # a changed file (mtime) is a new cache key
    st = ref.path.stat()
    os.utime(ref.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert mvtec3d._cache_file(ref.path) != cache


def test_load_point_file_tiff(synthetic_root: Path) -> None:
    path = synthetic_root / "wave" / "test" / "good" / "xyz" / "000.tiff"
    s = readers.load_point_file(path)
    ref = readers.list_samples("synthetic", synthetic_root, "wave", "test")
    full = [r for r in ref if r.path == path][0].load()
    np.testing.assert_array_equal(s.points, full.points)
    assert s.colors is None and s.point_labels is None and s.is_anomalous is None and s.grid_shape == (336, 336)
