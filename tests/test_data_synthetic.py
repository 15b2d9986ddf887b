"""Synthetic generators: layouts, formats, determinism, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from align3d_rt.data import synthetic
from align3d_rt.data.synthetic_shapes import DEFECT_IDS


def test_mvtec_layout_structure(synthetic_root: Path) -> None:
    cats = sorted(p.name for p in synthetic_root.iterdir() if p.is_dir())
    assert cats == sorted(synthetic.DEFAULT_CATEGORIES) and len(cats) >= 4
    for cat in cats:
        d = synthetic_root / cat
        assert len(list((d / "train" / "good" / "xyz").glob("*.tiff"))) == 2
        assert len(list((d / "train" / "good" / "rgb").glob("*.png"))) == 2
        assert len(list((d / "test" / "good" / "gt").glob("*.png"))) == 2
        for kind in synthetic.DEFECTS:
            assert sorted(p.name for p in (d / "test" / kind).iterdir()) == ["gt", "rgb", "xyz"]
        ids = json.loads((d / "class_ids.json").read_text())
        assert ids["0"] == "good" and set(ids.values()) == {"good", *synthetic.DEFECTS}
        assert (d / "calibration" / "camera_parameters.json").is_file()
    assert len(synthetic.DEFECTS) >= 4


def test_mvtec_files_like_real(synthetic_root: Path) -> None:
    xyz = tifffile.imread(synthetic_root / "dome" / "test" / "hole" / "xyz" / "000.tiff")
    assert xyz.dtype == np.float32 and xyz.shape == (180, 240, 3)  # non-square, H x W x 3
    assert np.isnan(xyz).any(axis=-1).sum() > 10
    assert ((xyz == 0).all(axis=-1)).sum() > 10
    finite = xyz[np.isfinite(xyz).all(-1) & (xyz != 0).any(-1)]
    assert 0.2 < np.median(finite[:, 2]) < 0.4  # metres
    rgb = np.asarray(Image.open(synthetic_root / "dome" / "test" / "hole" / "rgb" / "000.png"))
    assert rgb.shape == (180, 240, 3) and rgb.dtype == np.uint8
    for kind, cid in DEFECT_IDS.items():
        gt = np.asarray(Image.open(synthetic_root / "ring" / "test" / kind / "gt" / "000.png"))
        assert gt.shape == (180, 240) and set(np.unique(gt)) == {0, cid}
    good = np.asarray(Image.open(synthetic_root / "ring" / "test" / "good" / "gt" / "000.png"))
    assert not good.any()


def test_defect_changes_geometry(synthetic_root: Path) -> None:
    """Inside the gt region the surface departs from a smooth fit by millimetres."""
    for kind in ("bump", "dent", "crack"):
        xyz = tifffile.imread(synthetic_root / "box" / "test" / kind / "xyz" / "000.tiff")
        gt = np.asarray(Image.open(synthetic_root / "box" / "test" / kind / "gt" / "000.png")) > 0
        from scipy import ndimage

        rows, cols = np.nonzero(gt)
        box = (slice(max(rows.min() - 30, 0), rows.max() + 30), slice(max(cols.min() - 30, 0), cols.max() + 30))
        z = np.nan_to_num(xyz[..., 2])[box]
        smooth = ndimage.median_filter(z, size=61)  # ~3.7 cm window at the default 0.6 mm pixels
        dev = np.abs(z - smooth)[gt[box] & (z > 0)]
        assert dev.max() > 0.003, kind


def test_generation_deterministic(tmp_path: Path) -> None:
    a = synthetic.generate_mvtec_layout(tmp_path / "a", categories=["wave"], n_train=1, n_test_good=1, seed=3)
    b = synthetic.generate_mvtec_layout(tmp_path / "b", categories=["wave", "dome"], n_train=1, n_test_good=1, seed=3)
    c = synthetic.generate_mvtec_layout(tmp_path / "c", categories=["wave"], n_train=1, n_test_good=1, seed=4)
    rel = Path("wave/test/crack/xyz/000.tiff")
    xa, xb, xc = (tifffile.imread(r / rel) for r in (a, b, c))
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(np.nan_to_num(xa), np.nan_to_num(xc))
    assert (a / "wave/test/crack/gt/000.png").read_bytes() == (b / "wave/test/crack/gt/000.png").read_bytes()


def test_unknown_category_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown synthetic category"):
        synthetic.generate_mvtec_layout(tmp_path, categories=["teapot"])


def test_real3d_layout(tmp_path: Path) -> None:
    root = synthetic.generate_real3d_layout(tmp_path, categories=["torus"], n_train=1, n_test=4, n_points=3000, seed=1)
    names = sorted(p.name for p in (root / "torus" / "test").iterdir())
    assert names == ["100_good.pcd", "101_bulge.pcd", "102_sink.pcd", "103_bulge_cut.pcd"]
    assert (root / "torus" / "train" / "0_template.pcd").is_file()
    gt = np.loadtxt(root / "torus" / "gt" / "101_bulge.txt")
    assert gt.shape[1] == 4 and 0 < gt[:, 3].sum() < len(gt)
    assert not np.loadtxt(root / "torus" / "gt" / "100_good.txt")[:, 3].any()
    again = synthetic.generate_real3d_layout(tmp_path / "again", categories=["torus"], n_train=1, n_test=4,
                                             n_points=3000, seed=1)
    assert (again / "torus/gt/102_sink.txt").read_bytes() == (root / "torus/gt/102_sink.txt").read_bytes()


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.cli import main

    rc = main(["synth", "--out", str(tmp_path / "m"), "--categories", "dome", "--n-train", "1", "--n-test-good", "1",
               "--n-per-defect", "1", "--size", "120x160", "--seed", "2"])
    assert rc == 0
    assert tifffile.imread(tmp_path / "m/dome/train/good/xyz/000.tiff").shape == (120, 160, 3)
    rc = main(["synth", "--out", str(tmp_path / "r"), "--layout", "real3d", "--categories", "cube", "--n-test", "2",
               "--n-points", "2000"])
    assert rc == 0 and (tmp_path / "r/cube/test/101_bulge.pcd").is_file()
    assert main(["synth", "--out", str(tmp_path / "x"), "--categories", "teapot"]) == 2
    assert "teapot" in capsys.readouterr().err
