"""Issue #13 item 7: no data loss and one-line refusals for unusable --out, export targets, train start-up."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import numpy as np
import pytest
from infer_eval_support import bump_cloud, shared_tiny_run

from align3d_rt.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture()
def cloud(tmp_path: Path) -> Path:
    path = tmp_path / "c.npy"
    np.save(path, bump_cloud(12, seed=1).points)
    return path


def _one_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_export_never_deletes_foreign_folders(tiny_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--out equal to/inside --run, or a user folder, is refused and left as it was; a bundle needs --overwrite."""
    before = sorted(p.name for p in tiny_run.iterdir())
    for out in (tiny_run, tiny_run / "bundle"):
        assert main(["export", "--run", str(tiny_run), "--out", str(out)]) == 2
        _one_line(capsys, str(out), "run directory")
    assert sorted(p.name for p in tiny_run.iterdir()) == before
    user = tmp_path / "photos"
    user.mkdir()
    (user / "keep.txt").write_text("precious")
    assert main(["export", "--run", str(tiny_run), "--out", str(user), "--overwrite"]) == 2
    _one_line(capsys, str(user), "not a bundle")
    assert (user / "keep.txt").read_text() == "precious"
    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(tiny_run), "--out", str(bundle)]) == 0
    capsys.readouterr()
    stamp = (bundle / "manifest.json").stat().st_mtime_ns
    assert main(["export", "--run", str(tiny_run), "--out", str(bundle)]) == 2
    _one_line(capsys, str(bundle), "--overwrite")
    assert (bundle / "manifest.json").stat().st_mtime_ns == stamp
    assert main(["export", "--run", str(tiny_run), "--out", str(bundle), "--overwrite"]) == 0
    assert (bundle / "manifest.json").is_file()


def test_staged_directory_refuses_foreign_folder(tmp_path: Path) -> None:
    """The atomic bundle writer itself never replaces a folder that is not a bundle (defence in depth)."""
    from align3d_rt.artifacts.bundle import staged_directory
    from align3d_rt.errors import BundleError

    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    with pytest.raises(BundleError, match="not an empty folder or a bundle"):
        with staged_directory(user) as stage:
            (stage / "manifest.json").write_text("{}")
    assert (user / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("command", ["infer", "eval", "train"])
def test_unusable_out_is_one_line(command: str, tiny_run: Path, cloud: Path, tmp_path: Path,
                                  synthetic_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --out that is a file, or lies below a file, is refused before any work (exit 2, one line).

    (A read-only folder cannot be tested as root, who may write anywhere; a path below a file is
    unwritable for everyone.)"""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    head = {
        "infer": ["infer", str(cloud), "--run", str(tiny_run), "--no-ply", "--no-png"],
        "eval": ["eval", "--dataset", "synthetic", "--root", str(synthetic_root), "--run", str(tiny_run)],
        "train": ["train", "--dataset", "synthetic", "--root", str(synthetic_root), "--category", "dome",
                  "--clip", "align3d-tiny", "--epochs1", "1", "--epochs2", "1", "--reweight-epochs", "0",
                  "--dpca-epochs", "0"],
    }[command]
    for out in (afile, afile / "sub"):
        assert main([*head, "--out", str(out)]) == 2
        _one_line(capsys, str(out))
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("lr", ["nan", "-0.001", "0", "inf"])
def test_bad_learning_rate_is_one_line(lr: str, synthetic_root: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "synthetic", "--root", str(synthetic_root), "--category", "dome",
               "--clip", "align3d-tiny", "--out", str(out), f"--lr={lr}", "--epochs1", "1", "--reweight-epochs", "0",
               "--epochs2", "1", "--dpca-epochs", "0", "--max-samples", "2", "--no-progress"])
    assert rc == 2
    _one_line(capsys, "--lr")
    assert not out.exists()


def test_failed_train_startup_leaves_nothing(synthetic_root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Unusable CLIP weights fail at start-up: no run directory is left, so the retry is not blocked."""
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00garbage" * 16)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "synthetic", "--root", str(synthetic_root), "--category", "dome",
            "--clip", "align3d-tiny", "--clip-weights", str(bad), "--out", str(out), "--no-progress",
            "--epochs1", "1", "--reweight-epochs", "0", "--epochs2", "1", "--dpca-epochs", "0", "--max-samples", "2"]
    for _ in range(2):  # the retry meets the same problem, not "already holds a run"
        assert main(argv) == 2
        _one_line(capsys, str(bad), "cannot read CLIP weights")
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_infer_out_is_locked_and_not_mixed(tiny_run: Path, cloud: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A second infer into a folder another run writes is refused; a used folder needs --overwrite, which
    replaces (never mixes) its contents; a folder of other files is never emptied."""
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running infer holds
    try:
        assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(out), "--no-png"]) == 2
        _one_line(capsys, str(out), "another align3d-rt run")
    finally:
        os.close(fd)
    assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(out), "--no-png"]) == 0
    capsys.readouterr()
    (out / "stale.scores.npy").write_bytes(b"old")
    assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(out), "--no-png"]) == 2
    _one_line(capsys, str(out), "not empty", "--overwrite")
    # a file the earlier run did not write is never deleted, not even with --overwrite (issue #21)
    assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(out), "--no-png", "--overwrite"]) == 2
    _one_line(capsys, str(out), "did not write", "stale.scores.npy")
    assert (out / "stale.scores.npy").read_bytes() == b"old"
    (out / "stale.scores.npy").unlink()
    assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(out), "--no-png", "--overwrite"]) == 0
    assert sorted(json.loads((out / "scores.json").read_text())["samples"]) == ["c"]
    capsys.readouterr()
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(user), "--overwrite"]) == 2
    _one_line(capsys, str(user), "not an align3d-rt infer output folder")
    assert (user / "keep.txt").read_text() == "x"


def test_eval_out_needs_overwrite(tiny_run: Path, synthetic_root: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    assert main(["eval", "--dataset", "synthetic", "--root", str(synthetic_root), "--run", str(tiny_run),
                 "--out", str(out)]) == 2
    _one_line(capsys, str(out), "not empty")
    assert (out / "mine.txt").read_text() == "x"


def test_outputs_follow_the_umask(tiny_run: Path, cloud: Path, tmp_path: Path) -> None:
    """Every infer output (and its folder) gets the mode the umask asks for, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    files = list(out.iterdir())
    assert len(files) >= 4
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o644, f
