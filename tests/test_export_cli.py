"""``align3d-rt export`` / ``align3d-rt parity`` commands: reports, exit codes, one-line errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_support import session_samples, session_tiny

from align3d_rt.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return session_tiny(tmp_path_factory.getbasetemp() / "export_tiny")


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import export_support

    session_samples(tmp_path_factory.getbasetemp() / "export_data")
    return export_support._CACHE["syn_root"]  # type: ignore[return-value]


def test_parity_on_dataset_passes_and_writes_report(tiny: dict[str, Path], syn_root: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "parity.json"
    rc = main(["parity", "--run", str(tiny["run"]), "--bundle", str(tiny["fp32"]), str(syn_root),
               "--dataset", "synthetic", "--category", "dome", "--max-samples", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, report["failures"]
    assert report["precision"] == "fp32" and report["num_samples"] == 2 and report["num_views"] == 9
    assert report["passed"] and report["checked"]
    assert all(0 <= v <= 1e-4 for v in report["max_abs"].values())
    assert set(report["auroc"]) == {"object", "point"}
    assert report["info"]["samples"][0].startswith("dome/test/") and report["info"]["backend"] == "onnxruntime"
    assert "PASS" in capsys.readouterr().out


def test_parity_exits_1_over_threshold(tiny: dict[str, Path], tmp_path: Path) -> None:
    # An int8 bundle judged by the fp32 rule (1e-4 abs) must fail; the manifest is re-written through
    # the format's own writer (a hand edit is refused, see test_hand_edited_manifest_is_refused).
    from align3d_rt.artifacts.bundle import write_manifest

    bundle = shutil.copytree(tiny["int8"], tmp_path / "b")
    m = json.loads((bundle / "manifest.json").read_text())
    m["precision"] = "fp32"
    write_manifest(bundle, m)
    pts = np.random.default_rng(0).uniform(-1, 1, (4000, 3)).astype(np.float32)
    pts[:, 2] *= 0.2
    np.save(tmp_path / "cloud.npy", pts)
    out = tmp_path / "parity.json"
    rc = main(["parity", "--run", str(tiny["run"]), "--bundle", str(bundle), str(tmp_path / "cloud.npy"),
               "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 1 and not report["passed"] and report["auroc"] == {}
    assert any("view_maps max abs diff" in f for f in report["failures"])


def test_export_errors_are_one_line(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "missing" in err and not (tmp_path / "b").exists()
    rc = main(["export", "--run", str(tiny["run"]), "--out", str(tmp_path / "b"), "--tensorrt"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--precision fp16" in err and not (tmp_path / "b").exists()
