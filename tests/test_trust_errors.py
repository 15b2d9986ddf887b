"""Issue #21, family 6: one line (exit 2) where a traceback used to be, and nothing half-made left behind."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from infer_eval_support import bump_cloud, shared_tiny_run

from align3d_rt.cli import main
from align3d_rt.errors import Align3DError


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
    lines = [ln for ln in lines if not ln.startswith("align3d_rt: onnxruntime:") and "sample/s]" not in ln]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_export_to_another_file_system_than_the_temp_folder(tiny_run: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp folder on /dev/shm (tmpfs), --out on the disk: a rename across them fails with EXDEV, so
    nothing may be staged in the temp folder."""
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm tmpfs) on this machine")
    other = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="align3d-test-"))
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(other))
        assert main(["export", "--run", str(tiny_run), "--out", str(tmp_path / "b")]) == 0
        assert (tmp_path / "b" / "manifest.json").is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging or scratch folder left
    finally:
        shutil.rmtree(other, ignore_errors=True)


@pytest.mark.parametrize("opset", ["3", "12", "24", "1000"])
def test_export_opset_out_of_range_is_one_line(opset: str, tiny_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--run", str(tiny_run), "--out", str(tmp_path / "b"), f"--opset={opset}"]) == 2
    _one_line(capsys, f"--opset {opset}", "13 to 23")
    assert not (tmp_path / "b").exists()


def test_infer_disk_full_is_one_line(tiny_run: Path, cloud: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while a sample's files are written: one line naming the file, no temporary left behind."""
    import align3d_rt.io_utils as io_utils

    monkeypatch.setattr(io_utils.np, "save", _no_space)
    out = tmp_path / "out"
    assert main(["infer", str(cloud), "--run", str(tiny_run), "--out", str(out), "--no-png", "--no-ply"]) == 2
    line = _one_line(capsys, "No space left on device", f"{out / 'c.scores.npy'}: ")
    assert "free some space" in line
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_train_disk_full_leaves_no_half_run(synthetic_root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC when the first checkpoint is written: one line, and no run directory (the retry is not blocked)."""
    import align3d_rt.train.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "save_tensors", _no_space)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "synthetic", "--root", str(synthetic_root), "--category", "dome",
            "--clip", "align3d-tiny", "--clip-weights", "random", "--out", str(out), "--no-progress", "--epochs1", "1",
            "--reweight-epochs", "0", "--epochs2", "1", "--dpca-epochs", "0", "--max-samples", "2",
            "--image-size", "112"]
    assert main(argv) == 2
    _one_line(capsys, "No space left on device")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


@pytest.mark.parametrize("url", ["http://localhost:99999", "http://localhost:abc", "http://[::1", "grpc://h:0",
                                 "http://h:8000/v2", "http://h:8000?x=1", "ftp://h:8000", "http://:8000",
                                 "http://u:p@h:8000", "http://h :8000"])
def test_infer_triton_malformed_url_is_one_line(url: str, cloud: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["infer", str(cloud), "--triton", url, "--out", str(out)]) == 2
    _one_line(capsys, url, "expected http://HOST:PORT")
    assert not out.exists()


def test_triton_url_forms_that_work() -> None:
    from align3d_rt.serving.triton_client import parse_url

    assert parse_url("http://localhost:8000") == ("http", "localhost:8000")
    assert parse_url("grpc://10.0.0.2:8001/") == ("grpc", "10.0.0.2:8001")
    assert parse_url("http://[::1]:8000") == ("http", "[::1]:8000")
    with pytest.raises(Align3DError):
        parse_url("http://h:65536")


@pytest.mark.parametrize("backend, graph", [("onnxruntime", "encoder.onnx"), ("openvino", "encoder.xml")])
def test_bundle_image_size_differing_from_its_graph_is_refused_at_load(backend: str, graph: str, tiny_run: Path,
                                                                       cloud: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A (re-signed) manifest whose image_size is not the graph's: one line at load, never a runtime traceback."""
    from align3d_rt.artifacts.bundle import write_manifest

    bundle = tmp_path / "b"
    fmt = ["--format", "openvino", "--precision", "fp32"] if backend == "openvino" else []
    assert main(["export", "--run", str(tiny_run), "--out", str(bundle), *fmt]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    size = manifest["image_size"]
    manifest["image_size"] = manifest["render_settings"]["image_size"] = size - 28
    write_manifest(bundle, manifest)
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["infer", str(cloud), "--bundle", str(bundle), "--backend", backend, "--out", str(out)]) == 2
    _one_line(capsys, graph, f"image_size is {size - 28}", str(size))
    assert not out.exists()


def test_eval_on_a_wrong_layout_leaves_no_running_manifest(tiny_run: Path, synthetic_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """An MVTec-layout root evaluated as Eyecandies: exit 2, and no manifest that says "running" (no folder)."""
    out = tmp_path / "e"
    rc = main(["eval", "--dataset", "eyecandies", "--root", str(synthetic_root), "--run", str(tiny_run),
               "--out", str(out), "--categories", "dome"])
    assert rc == 2
    _one_line(capsys)
    manifest = out / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["status"] != "running"
    assert not out.exists()


def test_eval_stopped_after_a_class_says_stopped(tiny_run: Path, synthetic_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A class finished, the next one fails: the manifest says "stopped" (its finished class kept for --resume)."""
    import align3d_rt.eval.protocols as protocols

    real = protocols.evaluate_class
    calls = {"n": 0}

    def second_fails(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Align3DError("second class: broken")
        return real(*args, **kwargs)

    monkeypatch.setattr(protocols, "evaluate_class", second_fails)
    out = tmp_path / "e"
    rc = main(["eval", "--dataset", "synthetic", "--root", str(synthetic_root), "--run", str(tiny_run),
               "--out", str(out), "--protocol", "cross-dataset", "--examples", "0"])
    assert rc == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and len(manifest["finished_classes"]) == 1


def test_eval_terminated_after_a_class_says_interrupted(tiny_run: Path, synthetic_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM (kill, torchrun stopping the ranks) unwinds like Ctrl-C: exit 143, one line, and the manifest
    says "interrupted" with the finished class kept; the SIGTERM handler is restored afterwards."""
    import os
    import signal

    import align3d_rt.eval.protocols as protocols

    real = protocols.evaluate_class
    calls = {"n": 0}

    def second_is_killed(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(protocols, "evaluate_class", second_is_killed)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "e"
    rc = main(["eval", "--dataset", "synthetic", "--root", str(synthetic_root), "--run", str(tiny_run),
               "--out", str(out), "--protocol", "cross-dataset", "--examples", "0"])
    assert rc == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == "align3d-rt eval: terminated"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and len(manifest["finished_classes"]) == 1
    assert signal.getsignal(signal.SIGTERM) is before


SIGTERM_WHILE_REPORTING = """
import argparse, json, os, signal, sys
import align3d_rt.cli as cli

assert cli._rank_prefix() == "rank 0 of 2: "

def collective_fails(args):
    raise RuntimeError("[gloo] Connection closed by peer")

def killed_while_reporting(err):
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # torchrun may repeat it
    return "stopped"

cli._failure_line = killed_while_reporting
before = signal.getsignal(signal.SIGTERM)
rc = cli.run_parsed(argparse.Namespace(command="train", func=collective_fails))
print(json.dumps({"rc": rc, "restored": signal.getsignal(signal.SIGTERM) is before}))
"""


def test_sigterm_while_a_rank_reports_its_error_is_one_line(tmp_path: Path) -> None:
    """torchrun stops rank 0 (SIGTERM, sometimes twice) while rank 0 is reporting its own failed collective:
    the report ends in one "terminated" line and exit 143, never a traceback (the CI flake of stop 23).
    In a fresh interpreter: signals sent to the pytest process would also reach its other threads."""
    import subprocess
    import sys

    env = dict(os.environ, TORCHELASTIC_RUN_ID="test", RANK="0", WORLD_SIZE="2", LOCAL_RANK="0",
               LOCAL_WORLD_SIZE="2", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("TORCHELASTIC_ERROR_FILE", None)
    proc = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_REPORTING], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rc": 143, "restored": True}
    assert proc.stderr.strip().splitlines() == ["align3d-rt train: terminated"]  # one line, no traceback


@pytest.mark.parametrize("case, problem", [
    ("int_entry_key", "entry key 7 is not a string"),
    ("int_sd_key", "state-dict key 5 is not a string"),
    ("non_tensor", "rgb_prompt_learner.ctx_pos: a int, not a tensor"),
    ("list_value", "prompt_learner.ctx_neg: a list, not a tensor"),
    ("deep_key", "compound_prompts_text.x: malformed key"),
])
def test_import_checkpoint_malformed_keys_and_values(case: str, problem: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from test_import_checkpoint import _import, write_pair

    folder = tmp_path / "ckpt"
    rgb_path, rend_path, rgb, rendering = write_pair(folder)
    if case == "int_entry_key":
        rgb[7] = {}
    elif case == "int_sd_key":
        rgb["rgb_prompt_learner"][5] = torch.zeros(1)
    elif case == "non_tensor":
        rgb["rgb_prompt_learner"]["ctx_pos"] = 3
    elif case == "list_value":
        rendering["prompt_learner"]["ctx_neg"] = [0.0, 1.0]
    elif case == "deep_key":
        rgb["rgb_prompt_learner"]["compound_prompts_text.x"] = torch.zeros(4, 128)
    torch.save(rgb, rgb_path)
    torch.save(rendering, rend_path)
    run = tmp_path / "run"
    assert _import([str(rgb_path), "--out", str(run)]) == 2
    _one_line(capsys, problem, str(folder))
    assert not run.exists() and not list(tmp_path.glob(".run.*"))


def test_safetensors_disk_full_is_an_os_error_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """safetensors reports a full disk as SafetensorError ("... (os error 28)"), not OSError: run files turn it
    into ENOSPC naming the file, so the CLI prints one line (seen for real on a 200 KiB tmpfs)."""
    import safetensors.numpy
    from safetensors import SafetensorError

    from align3d_rt.artifacts.run_dir import save_tensors

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    with pytest.raises(OSError) as err:
        save_tensors(tmp_path / "a.safetensors", {"x": np.zeros(3, np.float32)})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "a.safetensors")
    assert list(tmp_path.iterdir()) == []
