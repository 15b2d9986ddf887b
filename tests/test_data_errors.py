"""Every bad input is a one-line InputError that names the file."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from align3d_rt.data import mvtec3d, readers, real3d
from align3d_rt.data.synthetic_real3d import write_gt_txt, write_pcd
from align3d_rt.errors import InputError


def _raises(path_part: str, fn: Callable[..., object], *args: object, **kwargs: object) -> str:
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert path_part in msg and "\n" not in msg, msg
    return msg


def test_missing_paths(tmp_path: Path) -> None:
    _raises("nowhere", readers.list_categories, "mvtec3d", tmp_path / "nowhere")
    _raises("nowhere", readers.list_samples, "real3d", tmp_path / "nowhere", "x", "test")
    _raises(str(tmp_path), readers.list_categories, "kitti", tmp_path)
    _raises(str(tmp_path), readers.list_categories, "mvtec3d", tmp_path)  # empty root: no categories
    (tmp_path / "cat" / "train").mkdir(parents=True)
    _raises("cat", readers.list_samples, "mvtec3d", tmp_path, "cat", "test")
    _raises("nope", readers.list_samples, "mvtec3d", tmp_path, "nope", "train")
    _raises("ghost.pcd", readers.load_point_file, tmp_path / "ghost.pcd")
    _raises("ghost.tiff", mvtec3d.preprocessed_grid, tmp_path / "ghost.tiff")
    (tmp_path / "a.xyz").write_text("1 2 3\n")
    _raises("a.xyz", readers.load_point_file, tmp_path / "a.xyz")


def test_bad_tiffs(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "gray.tiff", np.ones((40, 50), np.float32))
    assert "HxWx3" in _raises("gray.tiff", readers.load_point_file, tmp_path / "gray.tiff")
    tifffile.imwrite(tmp_path / "four.tiff", np.ones((40, 50, 4), np.float32))
    _raises("four.tiff", readers.load_point_file, tmp_path / "four.tiff")
    tifffile.imwrite(tmp_path / "int.tiff", np.ones((40, 50, 3), np.uint16))
    assert "float" in _raises("int.tiff", readers.load_point_file, tmp_path / "int.tiff")
    tifffile.imwrite(tmp_path / "zero.tiff", np.zeros((40, 50, 3), np.float32))
    _raises("zero.tiff", readers.load_point_file, tmp_path / "zero.tiff")
    nan = np.full((40, 50, 3), np.nan, np.float32)
    nan[:5] = 0
    tifffile.imwrite(tmp_path / "nan.tiff", nan)
    _raises("nan.tiff", readers.load_point_file, tmp_path / "nan.tiff")
    (tmp_path / "junk.tiff").write_bytes(b"II*\x00garbage")
    _raises("junk.tiff", readers.load_point_file, tmp_path / "junk.tiff")
    _raises("<array>", mvtec3d.preprocess_xyz, np.zeros((10, 10, 3), np.float32))


def test_missing_rgb_and_gt(synthetic_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synthetic_root / "dome", root / "dome")
    (root / "dome" / "test" / "dent" / "gt" / "000.png").unlink()
    (root / "dome" / "test" / "bump" / "rgb" / "000.png").unlink()
    shutil.rmtree(root / "dome" / "test" / "good" / "gt")
    refs = {r.label_name: r for r in readers.list_samples("synthetic", root, "dome", "test")}
    _raises("dent/gt/000.png", refs["dent"].load)
    _raises("bump/rgb/000.png", refs["bump"].load)
    assert not refs["good"].load().point_labels.any()  # test/good without a gt folder: all 0
    small = np.zeros((10, 10), np.uint8)
    from PIL import Image

    Image.fromarray(small).save(root / "dome" / "test" / "hole" / "gt" / "000.png")
    _raises("hole/gt/000.png", refs["hole"].load)  # wrong size


def test_unreadable_pcd_and_bad_gt(tmp_path: Path) -> None:
    (tmp_path / "broken.pcd").write_text("this is not a point cloud\n")
    _raises("broken.pcd", readers.load_point_file, tmp_path / "broken.pcd")
    pts = np.random.default_rng(0).random((500, 3))
    write_pcd(tmp_path / "1_bulge.pcd", pts)
    (tmp_path / "cols.txt").write_text("\n".join("1 2 3" for _ in range(500)) + "\n")
    assert "4 columns" in _raises("cols.txt", real3d.load_real3d_sample, tmp_path / "1_bulge.pcd",
                                  tmp_path / "cols.txt", label_name="bulge")
    write_gt_txt(tmp_path / "count.txt", pts[:499], np.zeros(499, np.uint8))
    assert "499" in _raises("count.txt", real3d.load_real3d_sample, tmp_path / "1_bulge.pcd", tmp_path / "count.txt",
                            label_name="bulge")
    (tmp_path / "text.txt").write_text("a b c d\n")
    _raises("text.txt", real3d.read_gt_txt, tmp_path / "text.txt")
    np.save(tmp_path / "bad.npy", np.zeros((5, 2)))
    _raises("bad.npy", readers.load_point_file, tmp_path / "bad.npy")
    np.save(tmp_path / "zero.npy", np.zeros((5, 3)))
    _raises("zero.npy", readers.load_point_file, tmp_path / "zero.npy")


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.cli import main

    assert main(["synth", "--out", str(tmp_path), "--size", "10by20"]) == 2
    assert "--size" in capsys.readouterr().err
