"""Issue #13 item 7: truncated .pcd/.ply, too few points, and no advice to load weights unsafely."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.data import readers
from align3d_rt.data.point_headers import MIN_POINTS
from align3d_rt.errors import InputError

PACKAGE = Path(__file__).resolve().parents[1] / "align3d_rt"


def _write(path: Path, points: np.ndarray, ascii_: bool) -> Path:
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    assert o3d.io.write_point_cloud(str(path), cloud, write_ascii=ascii_)
    return path


def _truncate(path: Path, keep_fraction: float) -> None:
    data = path.read_bytes()
    head = max(data.find(b"DATA"), data.find(b"end_header"))
    body_start = data.index(b"\n", head) + 1
    path.write_bytes(data[: body_start + int((len(data) - body_start) * keep_fraction)])


@pytest.mark.parametrize("suffix", [".pcd", ".ply"])
@pytest.mark.parametrize("ascii_", [False, True])
def test_truncated_cloud_is_refused(suffix: str, ascii_: bool, tmp_path: Path) -> None:
    """A file holding fewer points than its header promises is refused, not scored with zero-filled points."""
    pts = np.random.default_rng(0).random((500, 3)) + 1.0
    path = _write(tmp_path / f"c{suffix}", pts, ascii_)
    assert readers.load_point_file(path).num_points == 500  # the complete file reads
    _truncate(path, 0.5)
    with pytest.raises(InputError, match=r"header promises 500 (points|vertex rows), the file holds 2\d\d"
                       r"|malformed (PCD point|PLY vertex) row 2\d\d") as err:
        readers.load_point_file(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_truncated_compressed_pcd_is_refused(tmp_path: Path) -> None:
    import open3d as o3d

    pts = np.random.default_rng(4).random((500, 3)) + 1.0
    path = tmp_path / "z.pcd"
    assert o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)),
                                    write_ascii=False, compressed=True)
    assert b"binary_compressed" in path.read_bytes()[:400]
    assert readers.load_point_file(path).num_points == 500
    _truncate(path, 0.6)
    with pytest.raises(InputError, match=r"header promises 500 points, the file holds fewer \(compressed block "
                                         r"truncated\)"):
        readers.load_point_file(path)


@pytest.mark.parametrize("n", [1, 3, MIN_POINTS - 1])
def test_too_few_points_are_refused(n: int, tmp_path: Path) -> None:
    pts = np.random.default_rng(1).random((n, 3)).astype(np.float32) + 1.0
    np.save(tmp_path / "few.npy", pts)
    _write(tmp_path / "few.pcd", pts, False)
    for name in ("few.npy", "few.pcd"):
        with pytest.raises(InputError, match=f"only {n} valid point.*at least {MIN_POINTS}"):
            readers.load_point_file(tmp_path / name)
    np.save(tmp_path / "enough.npy", np.random.default_rng(1).random((MIN_POINTS, 3)).astype(np.float32) + 1.0)
    assert readers.load_point_file(tmp_path / "enough.npy").num_points == MIN_POINTS


def test_infer_reports_truncated_file_as_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI: the truncated file is listed as failed, the good one scored."""
    import json

    from align3d_rt.cli import main
    from align3d_rt.train.random_run import random_run_dir

    run = random_run_dir(tmp_path / "run")
    folder = tmp_path / "in"
    folder.mkdir()
    pts = np.random.default_rng(2).random((400, 3)) + 1.0
    _write(folder / "good.pcd", pts, False)
    _truncate(_write(folder / "cut.pcd", pts, False), 0.3)
    rc = main(["infer", str(folder), "--run", str(run), "--out", str(tmp_path / "o"), "--no-png", "--no-ply"])
    assert rc == 1
    summary = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert list(summary["samples"]) == ["in__good"]
    assert "header promises 400 points" in summary["failed"][str(folder / "cut.pcd")]


def test_unsafe_pickle_message_gives_no_unsafe_advice(tmp_path: Path) -> None:
    import torch

    from align3d_rt.errors import WeightsError
    from align3d_rt.model.clip_backbone import load_clip

    evil = tmp_path / "evil.pt"
    torch.save({"x": Path("/")}, evil)
    with pytest.raises(WeightsError) as err:
        load_clip("align3d-tiny", weights=str(evil))
    text = str(err.value)
    assert text.startswith(f"{evil}: cannot read CLIP weights") and "\n" not in text
    for advice in ("weights_only=False", "weights_only` set to `False", "still be loaded", "trust the source"):
        assert advice not in text


def test_package_never_suggests_unsafe_loading() -> None:
    """No message (or code) in the package suggests or uses torch.load(weights_only=False)."""
    pattern = re.compile(r"weights_only\s*=\s*False|weights_only[`'\"]?\s+(set\s+)?to\s+[`'\"]?False")
    hits = [f"{p}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []
    assert len(list(PACKAGE.rglob("*.py"))) > 50  # the scan did look at the package
