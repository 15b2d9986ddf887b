"""Issue #21 family 4: every numeric option of every command is checked (one line, exit 2, before any
work); `infer --dataset/--category` take only known names and scores.json records them; the C++
inspector checks --threads/--dataset/--category the same way."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_eval_support import bump_cloud, fake_detector

from align3d_rt.cli import main

BAD_NUMBERS = [
    (["infer", "c.npy", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["infer", "c.npy", "--out", "o", "--batch-size", "-3"], "--batch-size"),
    (["infer", "c.npy", "--out", "o", "--threads", "-2"], "--threads"),
    (["infer", "c.npy", "--out", "o", "--num-streams", "0"], "--num-streams"),
    (["infer", "c.npy", "--out", "o", "--timeout", "nan"], "--timeout"),
    (["infer", "c.npy", "--out", "o", "--retries", "-1"], "--retries"),
    (["infer", "c.npy", "--out", "o", "--image-level-weight", "1.5"], "--image-level-weight"),
    (["eval", "--dataset", "synthetic", "--root", "r", "--out", "o", "--examples", "-1"], "--examples"),
    (["eval", "--dataset", "synthetic", "--root", "r", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["export", "--run", "r", "--out", "o", "--opset", "0"], "--opset"),
    (["export", "--run", "r", "--out", "o", "--max-batch", "-18"], "--max-batch"),
    (["export", "--run", "r", "--out", "o", "--workspace-gb", "inf"], "--workspace-gb"),
    (["export", "--run", "r", "--out", "o", "--calibration-samples", "0"], "--calibration-samples"),
    (["train", "--dataset", "synthetic", "--root", "r", "--category", "c", "--out", "o", "--lr", "-1"], "--lr"),
    (["train", "--dataset", "synthetic", "--root", "r", "--category", "c", "--out", "o", "--epochs1", "-1"],
     "--epochs1"),
    (["train", "--dataset", "synthetic", "--root", "r", "--category", "c", "--out", "o", "--fusion-weight", "nan"],
     "--fusion-weight"),
    (["import-checkpoint", "x.pth", "--out", "o", "--fusion-weight", "2"], "--fusion-weight"),
    (["render", "c.npy", "--out", "o", "--image-size", "0"], "--image-size"),
    (["synth", "--out", "o", "--n-points", "0"], "--n-points"),
    (["demo", "--out", "o", "--seed", "-4"], "--seed"),
    (["bench", "--samples", "0"], "--samples"),
    (["parity", "--max-samples", "0"], "--max-samples"),
]


@pytest.mark.parametrize("argv, flag", BAD_NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_NUMBERS])
def test_bad_numbers_refused_on_one_line(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"argument {flag}" in err[0] and "must be" in err[0], err


@pytest.mark.parametrize("extra, problem", [
    (["--dataset", "mvtec"], "argument --dataset: invalid choice: 'mvtec'"),
    (["--category", "bagel"], "--category 'bagel': needs --dataset"),
    (["--dataset", "mvtec3d", "--category", "bagle"], "--category 'bagle': not a mvtec3d category"),
    (["--dataset", "real3d", "--category", "bagel"], "--category 'bagel': not a real3d category"),
])
def test_infer_refuses_unknown_dataset_and_category(extra: list[str], problem: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "c.npy", bump_cloud(12).points)
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", str(tmp_path / "nobundle"), "--out",
               str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and problem in err[0], err
    assert not (tmp_path / "out").exists()


def test_infer_records_dataset_and_category(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import align3d_rt.cli.infer as infer_mod

    det, _ = fake_detector()
    monkeypatch.setattr(infer_mod, "build_detector", lambda args: det)
    np.save(tmp_path / "c.npy", bump_cloud(12).points)
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", "unused", "--out", str(tmp_path / "out"),
               "--dataset", "mvtec3d", "--category", "bagel", "--no-ply", "--no-png"])
    summary = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert rc == 0 and summary["detector"]["dataset"] == "mvtec3d" and summary["detector"]["category"] == "bagel"
    assert list(summary["samples"]) == ["c"]


def test_inspector_checks_threads_dataset_category(tmp_path: Path) -> None:
    import cpp_build

    if cpp_build.missing_tools():
        pytest.skip(f"C++ toolchain missing ({', '.join(cpp_build.missing_tools())}); run scripts/setup.sh")
    pytest.importorskip("openvino")  # cpp_build configures with the openvino wheel's cmake folder
    tool = cpp_build.build("cpp") / "cpp" / "align3d-inspect"
    cases = [
        (["--threads", "-5"], "--threads: must be a positive integer, got '-5'"),
        (["--threads", "0"], "--threads: must be a positive integer, got '0'"),
        (["--threads", "4x"], "--threads: must be a positive integer, got '4x'"),
        (["--dataset", "mvtec"], "--dataset: invalid choice 'mvtec'"),
        (["--category", "bagel"], "--category 'bagel': needs --dataset"),
        (["--dataset", "mvtec3d", "--category", "bagle"], "--category 'bagle': not a mvtec3d category"),
    ]
    for extra, problem in cases:
        out = tmp_path / "out"
        proc = subprocess.run([str(tool), str(tmp_path / "b"), str(tmp_path / "c.npy"), "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and problem in lines[0], (extra, proc.stderr)
        assert not out.exists()
