"""Eyecandies reader on a small hand-made folder in the dataset's layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from align3d_rt.data import eyecandies, readers
from align3d_rt.errors import InputError

SIZE = 64
DMIN, DMAX = 0.4, 0.9


def _pose(angle: float, t: tuple[float, float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    pose = np.eye(4)
    pose[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    pose[:3, 3] = t
    return pose


def _write_sample(folder: Path, sid: str, anomalous: bool, pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    v, u = np.mgrid[0:SIZE, 0:SIZE]
    raw = (20000 + 300 * u + 100 * v + rng.integers(0, 50, (SIZE, SIZE))).astype(np.uint16)
    raw[:4, :4] = 0  # no measurement
    Image.fromarray(raw).save(folder / f"{sid}_depth.png")
    (folder / f"{sid}_info_depth.yaml").write_text(yaml.safe_dump({"normalization": {"min": DMIN, "max": DMAX}}))
    np.savetxt(folder / f"{sid}_pose.txt", pose)
    for k in range(6):
        Image.fromarray(np.full((SIZE, SIZE, 3), 40 * k, np.uint8)).save(folder / f"{sid}_image_{k}.png")
    mask = np.zeros((SIZE, SIZE), np.uint8)
    if anomalous:
        mask[20:30, 30:44] = 255
    Image.fromarray(mask).save(folder / f"{sid}_mask.png")
    (folder / f"{sid}_metadata.yaml").write_text(yaml.safe_dump({"anomalous": int(anomalous)}))
    return raw


@pytest.fixture()
def eye_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    _write_sample(tmp_path / "Candy" / "train" / "data", "000", False, _pose(0.3, (0.01, -0.02, 0.05)), rng)
    _write_sample(tmp_path / "Candy" / "val" / "data", "000", False, np.eye(4), rng)
    _write_sample(tmp_path / "Candy" / "test_public" / "data", "001", True, _pose(-0.2, (0.0, 0.03, 0.0)), rng)
    _write_sample(tmp_path / "Candy" / "test_public" / "data", "000", False, np.eye(4), rng)
    return tmp_path


def test_listing(eye_root: Path) -> None:
    assert readers.list_categories("eyecandies", eye_root) == ["Candy"]
    test = readers.list_samples("eyecandies", eye_root, "Candy", "test")
    assert [r.path.name for r in test] == ["000_depth.png", "001_depth.png"]
    assert [r.label_name for r in test] == ["good", "anomalous"]
    assert len(readers.list_samples("eyecandies", eye_root, "Candy", "validation")) == 1


def test_points_reproject_to_their_pixels(eye_root: Path) -> None:
    ref = readers.list_samples("eyecandies", eye_root, "Candy", "train")[0]
    s = ref.load()
    pose = np.loadtxt(ref.path.parent / "000_pose.txt")
    src = np.minimum((np.arange(336) * SIZE / 336).astype(int), SIZE - 1)
    assert s.grid_shape == (336, 336) and s.num_points == 336 * 336 - int((src < 4).sum()) ** 2  # zero-depth block
    cam = np.c_[s.points.astype(np.float64), np.ones(s.num_points)] @ pose.T
    f, c = eyecandies.FOCAL_LENGTH, SIZE / 2
    u, v = f * cam[:, 0] / cam[:, 2] + c, f * cam[:, 1] / cam[:, 2] + c
    rows, cols = np.divmod(s.grid_index, 336)
    np.testing.assert_allclose(u, src[cols], atol=2e-3)
    np.testing.assert_allclose(v, src[rows], atol=2e-3)
    raw = np.asarray(Image.open(ref.path)).astype(np.float64)
    depth = DMIN + raw[src[rows], src[cols]] / 65535 * (DMAX - DMIN)
    np.testing.assert_allclose(cam[:, 2], depth, rtol=1e-5)
    np.testing.assert_allclose(s.colors, 200 / 255, atol=1e-6)  # image_5
    assert not s.point_labels.any() and s.is_anomalous is False


def test_anomalous_labels_follow_mask(eye_root: Path) -> None:
    s = readers.list_samples("eyecandies", eye_root, "Candy", "test")[1].load()
    assert s.is_anomalous
    rows, cols = np.divmod(s.grid_index, 336)
    src = np.minimum((np.arange(336) * SIZE / 336).astype(int), SIZE - 1)
    expected = (src[rows] >= 20) & (src[rows] < 30) & (src[cols] >= 30) & (src[cols] < 44)
    np.testing.assert_array_equal(s.point_labels.astype(bool), expected)


def test_bad_inputs(eye_root: Path) -> None:
    data = eye_root / "Candy" / "test_public" / "data"
    (data / "001_mask.png").unlink()
    ref = readers.list_samples("eyecandies", eye_root, "Candy", "test")[1]
    with pytest.raises(InputError, match="001_mask.png"):
        ref.load()
    (data / "000_pose.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match="000_pose.txt"):
        readers.list_samples("eyecandies", eye_root, "Candy", "test")[0].load()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint16)).save(eye_root / "Candy/val/data/000_depth.png")
    with pytest.raises(InputError, match="000_depth.png.*no valid point"):
        readers.list_samples("eyecandies", eye_root, "Candy", "validation")[0].load()
