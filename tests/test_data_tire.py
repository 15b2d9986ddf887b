"""The real MVTec 3D-AD tire masks (shared/data) feeding the reader through mvtec_from_real_masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align3d_rt.data import grid as gridlib
from align3d_rt.data import readers
from align3d_rt.data.synthetic import mvtec_from_real_masks


@pytest.fixture(scope="module")
def tire_root(shared_tire_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mvtec_from_real_masks(shared_tire_root, tmp_path_factory.mktemp("tire"), seed=0, max_per_label=1,
                                 n_train=1, n_validation=1)


def test_real_sample_contents(shared_tire_root: Path) -> None:
    counts = {p.name: len(list((p / "gt").glob("*.png"))) for p in (shared_tire_root / "test").iterdir()}
    assert counts == {"combined": 5, "contamination": 28, "cut": 27, "good": 25, "hole": 27}


def test_layout_copies_real_files(tire_root: Path, shared_tire_root: Path) -> None:
    assert readers.list_categories("mvtec3d", tire_root) == ["tire"]
    refs = readers.list_samples("mvtec3d", tire_root, "tire", "test")
    assert [r.label_name for r in refs] == ["combined", "contamination", "cut", "good", "hole"]
    for ref in refs:
        real = shared_tire_root / "test" / ref.label_name / "gt" / ref.gt_path.name
        assert ref.gt_path.read_bytes() == real.read_bytes()
        rgb = shared_tire_root / "test" / ref.label_name / "rgb" / "000.png"
        assert ref.rgb_path.read_bytes() == rgb.read_bytes()
    import tifffile

    xyz = tifffile.imread(refs[0].path)
    assert xyz.shape == (800, 600, 3) and xyz.dtype == np.float32


@pytest.mark.parametrize("label", ["hole", "combined"])
def test_real_masks_become_point_labels(tire_root: Path, label: str) -> None:
    ref = [r for r in readers.list_samples("mvtec3d", tire_root, "tire", "test") if r.label_name == label][0]
    s = ref.load()
    mask = np.asarray(Image.open(ref.gt_path))
    assert set(np.unique(mask)) - {0} <= {253, 254, 255}  # real class ids, binarised by the reader
    assert s.grid_shape == (336, 336) and s.num_points > 10000
    rows, cols = gridlib.pad_resize_index(*mask.shape)
    expected = gridlib.gather((mask > 0).astype(np.uint8), rows, cols).reshape(-1)[s.grid_index]
    np.testing.assert_array_equal(s.point_labels, expected)
    assert s.point_labels.sum() > 10
    assert s.colors is not None and s.colors.shape == s.points.shape

