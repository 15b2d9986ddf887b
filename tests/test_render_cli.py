"""`align3d-rt render`: writes views, a contact sheet and correspondences; fails cleanly on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.cli import main
from align3d_rt.render.shapes import unorganized_cloud


def test_render_cli_writes_outputs(tmp_path: Path) -> None:
    src = tmp_path / "cloud.npy"
    np.save(src, unorganized_cloud(2000))
    out = tmp_path / "out"
    rc = main(["render", str(src), "--preset", "mvtec9", "--image-size", "96", "--out", str(out)])
    assert rc == 0
    views = sorted(p.name for p in out.glob("view_*.png"))
    assert views == [f"view_{v:02d}.png" for v in range(9)]
    assert (out / "contact_sheet.png").stat().st_size > 1000
    with np.load(out / "correspondences.npz") as z:
        assert z["pixels"].shape == (9, 2000, 2) and z["visible"].shape == (9, 2000)
        assert json.loads(str(z["settings"]))["preset"] == "mvtec9"
    assert not list(out.glob(".*"))  # no temporary leftovers


def test_render_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["render", str(tmp_path / "missing.npy"), "--out", str(out)])
    assert rc == 2
    assert "missing.npy" in capsys.readouterr().err
    assert not out.exists()


def test_render_cli_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 5), np.float32))
    assert main(["render", str(bad), "--out", str(tmp_path / "o")]) == 2


def test_real3d_loose_cloud_resampled_like_the_dataset(tmp_path: Path) -> None:
    """--dataset real3d: a loose cloud is resampled to 112,896 points, as the Real3D-AD reader does."""
    from align3d_rt.cli import main
    from align3d_rt.data.real3d import NUM_POINTS

    pts = np.random.default_rng(1).normal(size=(3000, 3)).astype(np.float32)
    np.save(tmp_path / "part.npy", pts)
    assert main(["render", str(tmp_path / "part.npy"), "--dataset", "real3d", "--out", str(tmp_path / "out")]) == 0
    with np.load(tmp_path / "out" / "correspondences.npz") as corr:
        assert corr["pixels"].shape[1] == NUM_POINTS and corr["visible"].shape[1] == NUM_POINTS
