"""Issue #21 family 2 (and the bundle grid_size rule of family 3): NaN/Inf never becomes a result.

Checkpoints and runs with NaN/Inf tensors are refused at import, at run loading and at export; a
sample whose scores are not all finite is a failed sample (one line, exit 1); scores.json is
standard JSON; garbage ASCII rows are refused, not scored as (0,0,0)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_support import make_run_dir
from infer_eval_support import FakeBackend, bump_cloud
from test_import_checkpoint import _import, write_pair

from align3d_rt.artifacts import run_dir as rd
from align3d_rt.cli import main
from align3d_rt.render.views import RenderSettings
from align3d_rt.runtime.base import EncoderOutput
from align3d_rt.runtime.detector import Detector


def _strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("where, value", [("ctx", float("nan")), ("aligner", float("inf"))])
def test_import_refuses_non_finite_checkpoint(where: str, value: float, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rgb_path, _, rgb, _ = write_pair(tmp_path / "ckpt")
    if where == "ctx":
        rgb["rgb_prompt_learner"]["ctx_pos"][0, 0, 3, 5] = value
    else:
        rgb["aligner"]["local_mlp.output.weight"][7, 2] = value
    torch.save(rgb, rgb_path)
    assert _import([str(rgb_path), "--out", str(tmp_path / "run")]) == 2
    line = _one_line(capsys)
    assert str(rgb_path) in line and "non-finite" in line, line
    assert not (tmp_path / "run").exists()


@pytest.fixture
def nan_run(tmp_path: Path) -> Path:
    run = make_run_dir(tmp_path / "run")
    state = rd.load_tensors(run / rd.ALIGNER)
    name = sorted(state)[0]
    state[name] = state[name].copy()
    state[name].flat[3] = np.nan
    rd.save_tensors(run / rd.ALIGNER, state)
    return run


def test_run_with_nan_weights_is_refused_by_infer_and_export(nan_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "c.npy", bump_cloud(12).points)
    rc = main(["infer", str(tmp_path / "c.npy"), "--run", str(nan_run), "--out", str(tmp_path / "o")])
    line = _one_line(capsys)
    assert rc == 2 and f"{nan_run / rd.ALIGNER}: tensor" in line and "NaN/Inf" in line, line
    assert not (tmp_path / "o" / "c.scores.npy").exists()
    rc = main(["export", "--run", str(nan_run), "--out", str(tmp_path / "b")])
    line = _one_line(capsys)
    assert rc == 2 and "NaN/Inf" in line and not (tmp_path / "b").exists(), line


class NanBackend(FakeBackend):
    """The fake encoder with NaN in one patch of every view (as NaN weights would give)."""

    def _infer_impl(self, views: np.ndarray) -> EncoderOutput:
        out = super()._infer_impl(views)
        maps = out.patch_maps.copy()
        maps[:, :, 10:14, 10:14] = np.nan
        return EncoderOutput(maps, out.global_probs)


def test_non_finite_scores_are_a_failed_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import align3d_rt.cli.infer as infer_mod

    backend = NanBackend()
    det = Detector(lambda: backend, RenderSettings(preset="mvtec9", point_size=8), 0.5, "fake", {"backend": "fake"})
    monkeypatch.setattr(infer_mod, "build_detector", lambda args: det)
    np.save(tmp_path / "c.npy", bump_cloud(16).points)
    out = tmp_path / "out"
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", "unused", "--out", str(out), "--no-png"])
    summary = _strict_json(out / "scores.json")
    assert rc == 1 and summary["samples"] == {}, summary
    (msg,) = summary["failed"].values()
    assert msg.startswith(f"{tmp_path / 'c.npy'}: scores are not finite") and "\n" not in msg
    assert not (out / "c.scores.npy").exists() and not (out / "c.ply").exists()
    assert "scores are not finite" in capsys.readouterr().err
    with pytest.raises(Exception, match="scores are not finite"):  # the one-batch API raises it too
        det.score([bump_cloud(16)])


def test_json_outputs_are_standard(tmp_path: Path) -> None:
    from align3d_rt.io_utils import write_json_atomic

    write_json_atomic(tmp_path / "m.json", {"auroc": float("nan"), "x": [np.float32(np.inf), 1.5], "n": 2})
    assert _strict_json(tmp_path / "m.json") == {"auroc": None, "x": [None, 1.5], "n": 2}


def test_text_rows_are_refused_not_scored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ASCII .pcd/.ply of text or short rows: a failed sample (exit 1), not points at (0,0,0) scored."""
    from infer_eval_support import fake_detector

    import align3d_rt.cli.infer as infer_mod

    det, _ = fake_detector()
    monkeypatch.setattr(infer_mod, "build_detector", lambda args: det)
    head = ("VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 100\nHEIGHT 1\nPOINTS 100\n"
            "DATA ascii\n")
    (tmp_path / "text.pcd").write_text(head + "lorem ipsum dolor\n" * 100)
    (tmp_path / "short.ply").write_text("ply\nformat ascii 1.0\nelement vertex 100\nproperty float x\n"
                                        "property float y\nproperty float z\nend_header\n" + "0.1 0.2\n" * 100)
    rc = main(["infer", str(tmp_path / "text.pcd"), str(tmp_path / "short.ply"), "--bundle", "unused",
               "--out", str(tmp_path / "out"), "--no-png", "--no-ply"])
    summary = _strict_json(tmp_path / "out" / "scores.json")
    assert rc == 1 and summary["samples"] == {}
    assert summary["failed"][str(tmp_path / "text.pcd")].endswith("malformed PCD point row 0 (a value is not a number)")
    assert summary["failed"][str(tmp_path / "short.ply")].endswith("malformed PLY vertex row 0")


def test_fifo_and_link_loop_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.npy")
    os.symlink(tmp_path / "loop.npy", tmp_path / "loop.npy")
    for name, problem in (("pipe.npy", "not a regular file"), ("loop.npy", "symbolic link loop")):
        rc = main(["infer", str(tmp_path / name), "--bundle", "unused", "--out", str(tmp_path / f"o_{name}")])
        line = _one_line(capsys)
        assert rc == 2 and line.endswith(f"{tmp_path / name}: {problem}"), line


@pytest.fixture(scope="module")
def ov_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("openvino")
    root = tmp_path_factory.mktemp("grid_bundle")
    run = make_run_dir(root / "run", preset="mvtec9")
    assert main(["export", "--run", str(run), "--out", str(root / "b"), "--format", "openvino",
                 "--precision", "fp32"]) == 0
    return root / "b"


@pytest.mark.parametrize("grid", [24.0, 0, True, 400])
def test_grid_size_rule_is_the_same_on_both_sides(grid: object, ov_bundle: Path, tmp_path: Path) -> None:
    """grid_size must be an integer in 1..image_size: Python and the C++ inspector refuse the same manifests."""
    import shutil

    import cpp_build

    from align3d_rt.artifacts.bundle import MANIFEST_NAME, load_bundle, write_manifest
    from align3d_rt.errors import BundleError

    b = tmp_path / "b"
    shutil.copytree(ov_bundle, b)
    manifest = json.loads((b / MANIFEST_NAME).read_text())
    manifest["grid_size"] = grid
    write_manifest(b, manifest)  # re-signed: only the value is wrong
    with pytest.raises(BundleError) as err:
        load_bundle(b)
    expected = f"{b / MANIFEST_NAME}: grid_size {grid!r} must be an integer in 1..image_size (336)"
    assert str(err.value) == expected
    if cpp_build.missing_tools():
        pytest.skip("C++ toolchain missing; run scripts/setup.sh")
    np.save(tmp_path / "c.npy", bump_cloud(12).points)
    tool = cpp_build.build("cpp") / "cpp" / "align3d-inspect"
    proc = subprocess.run([str(tool), str(b), str(tmp_path / "c.npy"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == expected, proc.stderr


def test_eval_counts_non_finite_samples_as_failed(synthetic_root: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """eval with an encoder that gives NaN: every sample is failed (exit 1), no metric is made of NaN scores."""
    from align3d_rt.cli import eval as eval_cli

    backend = NanBackend()
    det = Detector(lambda: backend, RenderSettings(preset="mvtec9", point_size=8), 0.5, "fake",
                   {"backend": "fake", "run_config": {"dataset": "synthetic", "category": "ring"}})
    monkeypatch.setattr(eval_cli, "build_detector", lambda args: det)
    out = tmp_path / "eval"
    rc = main(["eval", "--protocol", "cross-dataset", "--dataset", "synthetic", "--root", str(synthetic_root),
               "--run", str(tmp_path), "--out", str(out), "--categories", "dome", "--examples", "0"])
    assert rc == 1
    data = _strict_json(out / "results.json")
    (dome,) = data["classes"]
    n_total = len(list((synthetic_root / "dome" / "test").glob("*/xyz/*.tiff")))
    assert dome["n_samples"] == 0 and len(dome["failed"]) == n_total > 0
    assert all("scores are not finite" in msg for msg in dome["failed"].values())
    _strict_json(out / "manifest.json")
