"""``align3d-rt eval``: tables, manifest and one-line errors through the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from infer_eval_support import fake_detector, shared_tiny_run

from align3d_rt.cli import main


def test_eval_cli_fake_encoder(synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """The command's glue (class selection, tables, manifest) with a fast stand-in encoder."""
    from align3d_rt.cli import eval as eval_cli

    det, _ = fake_detector(info={"backend": "fake", "run_config": {"dataset": "synthetic", "category": "ring"}})
    monkeypatch.setattr(eval_cli, "build_detector", lambda args: det)
    out = tmp_path / "eval"
    rc = main(["eval", "--protocol", "cross-dataset", "--dataset", "synthetic", "--root", str(synthetic_root),
               "--run", str(tmp_path), "--out", str(out), "--categories", "ring", "--examples", "0"])
    assert rc == 0
    assert "| ring |" in capsys.readouterr().out  # cross-dataset keeps the training class name
    man = json.loads((out / "manifest.json").read_text())
    assert man["protocol"] == "cross-dataset" and man["excluded_training_class"] is None
    assert not (out / "results_examples").exists()


@pytest.mark.heavy
def test_eval_one_vs_rest_cli(synthetic_root: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """The real torch backend (random tiny run) through the command line."""
    run = shared_tiny_run(tmp_path_factory)  # random tiny run, 'trained' on synthetic/dome
    out = tmp_path / "eval"
    rc = main(["eval", "--protocol", "one-vs-rest", "--dataset", "synthetic", "--root", str(synthetic_root),
               "--run", str(run), "--out", str(out), "--categories", "dome", "box", "--batch-size", "4"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "training class 'dome' left out" in cap.err
    assert "| box |" in cap.out and "| dome |" not in cap.out
    data = json.loads((out / "results.json").read_text())
    assert [c["category"] for c in data["classes"]] == ["box"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["backend"] == "torch" and man["clip_name"] == "align3d-tiny" and man["protocol"] == "one-vs-rest"
    assert man["test_classes"] == ["box"] and man["precision"] == "fp32"
    assert (out / "results.csv").read_text().splitlines()[-1].startswith("mean,")


def test_eval_errors_one_line(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                              capsys: pytest.CaptureFixture[str]) -> None:
    run = shared_tiny_run(tmp_path_factory)
    rc = main(["eval", "--dataset", "synthetic", "--root", str(tmp_path / "none"), "--run", str(run),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "dataset root not found" in err[0]
    rc = main(["eval", "--dataset", "synthetic", "--root", str(tmp_path), "--run", str(tmp_path / "norun"),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "norun" in err[0]
    assert not (tmp_path / "o").exists()
