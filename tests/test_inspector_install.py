"""The line-side inspector installs: numpy, numba and onnxruntime (or openvino) only (README: "Line-side install").

The child process makes every other third-party package unimportable (torch, open_clip, open3d, tqdm,
matplotlib, PIL, scipy, sklearn, skimage, safetensors, tifffile, yaml) and runs the real CLI:
`align3d-rt infer CLOUD.npy --bundle B --no-ply --no-png`. Scores must match the torch reference.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from blocking import run_blocked
from export_support import session_tiny

ALLOWED = ("numpy", "numba", "llvmlite", "onnxruntime", "align3d_rt")
BLOCKED = ("torch", "torchvision", "open_clip", "open3d", "tqdm", "matplotlib", "PIL", "scipy", "sklearn",
           "skimage", "safetensors", "tifffile", "yaml", "onnx")

_CHILD = """
from align3d_rt.cli import main
rc = main(sys.argv[1:])
loaded = sorted({m.split('.')[0] for m in sys.modules} & set(_BLOCKED))
print('LOADED=' + ','.join(loaded))
sys.exit(rc)
"""


def test_infer_with_numpy_numba_onnxruntime_only(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    tiny = session_tiny(tmp_path_factory.getbasetemp() / "export_tiny")
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(4000, 3)).astype(np.float32)
    pts = 0.05 * pts / np.linalg.norm(pts, axis=1, keepdims=True)
    cloud = tmp_path / "part.npy"
    np.save(cloud, pts)
    out = tmp_path / "out"
    proc = run_blocked(_CHILD, *BLOCKED, args=("infer", str(cloud), "--bundle", str(tiny["fp32"]), "--out", str(out),
                                                "--no-ply", "--no-png"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED=\n" in proc.stdout or proc.stdout.strip().endswith("LOADED="), proc.stdout
    scores = np.load(out / "part.scores.npy")
    assert scores.shape == (4000, 3) and np.isfinite(scores).all()
    summary = json.loads((out / "scores.json").read_text())
    assert summary["failed"] == {} and len(summary["samples"]) == 1

    # Same cloud through the torch reference of the same run: the per-point scores agree.
    from align3d_rt.data.readers import load_point_file
    from align3d_rt.runtime.detector import Detector

    with Detector.from_run(tiny["run"]) as det:
        ref = det.score([load_point_file(cloud)])[0].point_scores
    assert np.abs(ref - scores).max() < 1e-4


OV_ALLOWED = ("numpy", "numba", "llvmlite", "openvino", "align3d_rt")
OV_BLOCKED = BLOCKED + ("onnxruntime", "nncf")


def test_infer_with_numpy_numba_openvino_only(signal_root: Path, tmp_path: Path) -> None:
    """The OpenVINO line-side install: numpy, numba and openvino; onnxruntime, torch, open3d... unimportable."""
    pytest.importorskip("openvino")
    from parity_support import signal_bundle, signal_run

    ov = {"run": signal_run(signal_root), "fp32": signal_bundle(signal_root, "fp32", fmt="openvino")}
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(4000, 3)).astype(np.float32)
    pts = 0.05 * pts / np.linalg.norm(pts, axis=1, keepdims=True)
    cloud = tmp_path / "part.npy"
    np.save(cloud, pts)
    out = tmp_path / "out"
    proc = run_blocked(_CHILD, *OV_BLOCKED, args=("infer", str(cloud), "--bundle", str(ov["fp32"]), "--backend",
                                                 "openvino", "--precision-hint", "f32", "--out", str(out),
                                                 "--no-ply", "--no-png"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("LOADED="), proc.stdout
    scores = np.load(out / "part.scores.npy")
    summary = json.loads((out / "scores.json").read_text())
    assert summary["failed"] == {} and summary["detector"]["backend"] == "openvino"

    from align3d_rt.data.readers import load_point_file
    from align3d_rt.runtime.detector import Detector

    with Detector.from_run(ov["run"]) as det:
        ref = det.score([load_point_file(cloud)])[0].point_scores
    assert np.abs(ref - scores).max() < 1e-4
