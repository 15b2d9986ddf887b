"""``align3d-rt infer``: outputs, one bad file skipped, one-line errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from infer_eval_support import bump_cloud, shared_tiny_run

from align3d_rt.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    import open3d as o3d

    folder = tmp_path / "clouds"
    (folder / "sub").mkdir(parents=True)
    np.save(folder / "a.npy", bump_cloud(30, seed=1).points)
    pc = o3d.geometry.PointCloud()
    pc.points = o3d.utility.Vector3dVector(bump_cloud(25, seed=2).points.astype(np.float64))
    o3d.io.write_point_cloud(str(folder / "sub" / "b.ply"), pc)
    np.save(folder / "sub" / "bad.npy", np.ones((10, 2), np.float32))      # not (N,3)
    (folder / "notes.txt").write_text("ignored: not a point file suffix")
    return folder


def test_folder_scored_bad_file_skipped(tiny_run: Path, inputs: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["infer", str(inputs), "--run", str(tiny_run), "--out", str(out), "--batch-size", "2"])
    err = capsys.readouterr().err
    assert rc == 1  # some file failed
    skipped = [ln for ln in err.splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and "bad.npy" in skipped[0]
    summary = json.loads((out / "scores.json").read_text())
    assert set(summary["samples"]) == {"clouds__a", "clouds__sub__b"}
    assert list(summary["failed"]) == [str(inputs / "sub" / "bad.npy")]
    for key, n in (("clouds__a", 900), ("clouds__sub__b", 625)):
        entry = summary["samples"][key]
        scores = np.load(out / entry["outputs"]["scores"])
        assert scores.shape == (n, 3) and scores.dtype == np.float32
        assert entry["max_point_score"] == pytest.approx(float(scores[:, 2].max()))
        assert 0.0 <= entry["object_score"] - entry["max_point_score"] <= 1.0  # + mean fused global prob
        assert (out / entry["outputs"]["png"]).stat().st_size > 1000
    import open3d as o3d

    ply = o3d.io.read_point_cloud(str(out / "clouds__a.ply"))
    assert len(ply.points) == 900 and ply.has_colors()
    assert summary["detector"]["backend"] == "torch"
    assert not list(out.glob(".*"))  # no temporary files left


def test_single_file_no_extras(tiny_run: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = main(["infer", str(inputs / "a.npy"), "--run", str(tiny_run), "--out", str(out), "--no-ply", "--no-png"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.points.npy", "a.scores.npy", "scores.json"]
    np.testing.assert_array_equal(np.load(out / "a.points.npy"), np.load(inputs / "a.npy").astype(np.float32))
    assert np.load(out / "a.scores.npy").shape == (np.load(out / "a.points.npy").shape[0], 3)


def test_bad_inputs_one_line(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((50, 3), np.nan, np.float32))
    txt = tmp_path / "table.csv"
    txt.write_text("1,2,3\n")
    rc = main(["infer", str(nan), str(txt), "--run", str(tiny_run), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert sum("skipped" in ln for ln in err) == 2
    assert any("nan.npy" in ln for ln in err) and any("table.csv" in ln for ln in err)


def test_missing_path_and_incomplete_run(tiny_run: Path, inputs: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["infer", str(tmp_path / "nope.npy"), "--run", str(tiny_run), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope.npy" in err[0]

    broken = tmp_path / "broken_run"
    shutil.copytree(tiny_run, broken)
    (broken / "text_embeddings.safetensors").unlink()
    rc = main(["infer", str(inputs / "a.npy"), "--run", str(broken), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "incomplete run" in err[0]
    assert not (tmp_path / "o2" / "scores.json").exists()


def test_missing_backend_one_line(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle asked to run on TensorRT where it is not installed: one line, exit 2."""
    import sys

    from align3d_rt.artifacts import bundle as bundle_mod

    fake = bundle_mod.Bundle(path=tmp_path, manifest={"files": {}, "clip": {}}, onnx_path=tmp_path / "encoder.onnx",
                             precision="fp32", render_settings=bundle_mod.RenderSettings(), fusion_weight=0.5,
                             image_size=336)
    monkeypatch.setattr(bundle_mod, "load_bundle", lambda path, verify=True, defer_unread=False: fake)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    rc = main(["infer", str(inputs / "a.npy"), "--bundle", str(tmp_path), "--backend", "tensorrt",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "tensorrt" in err[0].lower()
