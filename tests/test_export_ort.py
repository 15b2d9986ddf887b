"""ONNX Runtime backend: torch-free fp32 parity (1e-4), fp16/int8 AUROC parity (on the trained signal
fixture),\nprovider handling."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from export_support import random_views, session_tiny

from align3d_rt.eval.parity import FP32_MAX_ABS, compare
from align3d_rt.runtime.onnxruntime_backend import resolve_providers

REPO = Path(__file__).resolve().parents[1]

# Makes `import torch` (and open_clip, which needs it) fail inside the child process.
_BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('torch', 'open_clip', 'torchvision'):
                raise ImportError(f'{name} is blocked in this test')
            return None
    sys.meta_path.insert(0, _Block())
""")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return session_tiny(tmp_path_factory.getbasetemp() / "export_tiny")


def _torch_reference(run: Path, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from align3d_rt.runtime.torch_backend import TorchBackend

    with TorchBackend.from_run(run) as tb:
        out = tb.infer(views)
    return out.patch_maps, out.global_probs


def test_fp32_parity_through_torch_free_ort(tiny: dict[str, Path], tmp_path: Path) -> None:
    views = random_views(3, seed=5)
    np.save(tmp_path / "views.npy", views)
    child = _BLOCK_TORCH + textwrap.dedent(f"""
        import json, sys
        import numpy as np
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit('torch import was not blocked')
        from align3d_rt.runtime.onnxruntime_backend import OrtBackend
        from align3d_rt.runtime.detector import Detector
        from align3d_rt.artifacts.bundle import load_bundle
        views = np.load({str(tmp_path / 'views.npy')!r})
        with OrtBackend(load_bundle({str(tiny['fp32'])!r})) as b:
            out = b.infer(views)
            seconds, name = b.last_infer_seconds, b.name
        Detector.from_bundle({str(tiny['fp32'])!r})
        np.save({str(tmp_path / 'maps.npy')!r}, out.patch_maps)
        np.save({str(tmp_path / 'probs.npy')!r}, out.global_probs)
        print(json.dumps({{'torch_loaded': 'torch' in sys.modules, 'seconds': seconds, 'name': name}}))
    """)
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == {"torch_loaded": False, "seconds": info["seconds"], "name": "onnxruntime"} and info["seconds"] > 0
    ref_maps, ref_probs = _torch_reference(tiny["run"], views)
    maps, probs = np.load(tmp_path / "maps.npy"), np.load(tmp_path / "probs.npy")
    assert maps.shape == ref_maps.shape == (3, 2, 24, 24)
    assert np.abs(maps - ref_maps).max() <= FP32_MAX_ABS
    assert np.abs(probs - ref_probs).max() <= FP32_MAX_ABS
    assert np.ptp(ref_maps) > 0.05  # the comparison is not between constants


def test_signal_fixture_ranks_defects(signal_root: Path, record_figure) -> None:  # noqa: ANN001
    """The parity fixture carries signal: point AUROC >= 0.6 and SIGNAL_SE standard errors above chance."""
    from parity_support import SIGNAL_SE, signal_stats

    stats = signal_stats(signal_root)
    record_figure(stats.line())
    assert stats.point_auroc >= 0.6 and stats.point_margin_in_se >= SIGNAL_SE, stats.line()
    assert stats.n_pos >= 500 and stats.objects_pos >= 2 and stats.objects_neg >= 2, stats.line()


def test_fp16_and_int8_pipeline_parity(signal_root: Path, record_figure) -> None:  # noqa: ANN001
    """fp16 and int8 ONNX Runtime bundles of the trained signal run meet the documented AUROC tolerance."""
    from parity_support import assert_auroc_parity, signal_bundle, signal_reference, signal_samples

    from align3d_rt.eval.parity import score_all
    from align3d_rt.runtime.detector import Detector

    samples, reference = signal_samples(signal_root), signal_reference(signal_root)
    for precision in ("fp16", "int8"):
        test = score_all(Detector.from_bundle(signal_bundle(signal_root, precision)), samples, batch_size=4)
        report = compare(samples, reference, test, precision)
        record_figure(f"onnxruntime {precision}: AUROC diff point {report.auroc['point']['diff']:+.5f}, "
                      f"object {report.auroc['object']['diff']:+.5f}; max abs view maps "
                      f"{report.max_abs['view_maps']:.4f}")
        assert_auroc_parity(samples, reference, report, f"onnxruntime {precision}")
        # Sanity bound on the raw maps (the documented parity threshold is the AUROC one above).
        limit = {"fp16": 1e-2, "int8": 0.1}[precision]
        assert 0 < report.max_abs["view_maps"] < limit, report.max_abs


def test_compare_flags_threshold_breaches() -> None:
    from types import SimpleNamespace

    def res(maps: float, obj: float, pts: np.ndarray) -> SimpleNamespace:
        return SimpleNamespace(view_maps=np.full((9, 2, 4, 4), maps, np.float32), global_probs=np.zeros((9, 2)),
                               point_scores=np.stack([pts] * 3, 1), fused=pts, object_score=obj)

    samples = [SimpleNamespace(is_anomalous=i >= 2, point_labels=np.array([0, 1, 0], np.uint8)) for i in range(4)]
    pts = np.array([0.1, 0.9, 0.2], np.float32)
    ref = [res(0.5, float(i), pts) for i in range(4)]
    close = [res(0.5 + 5e-5, float(i), pts) for i in range(4)]
    assert compare(samples, ref, close, "fp32").passed
    far = [res(0.5 + 2e-4, float(i), pts) for i in range(4)]
    rep = compare(samples, ref, far, "fp32")
    assert not rep.passed and any("view_maps" in f for f in rep.failures)
    flipped = [res(0.5, float(3 - i), pts) for i in range(4)]  # object ranking reversed
    rep = compare(samples, ref, flipped, "int8")
    assert not rep.passed and rep.auroc["object"]["diff"] < -0.5
    json.dumps(rep.to_dict())  # serialisable (nan -> null)


def test_resolve_providers() -> None:
    cpu = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(None, cpu) == (cpu, [])
    assert resolve_providers(None, gpu) == (["CUDAExecutionProvider", "CPUExecutionProvider"], [])
    assert resolve_providers(["tensorrt", "cuda"], gpu) == (gpu, [])
    assert resolve_providers(["cuda"], cpu) == (cpu, ["CUDAExecutionProvider"])


def test_unavailable_provider_falls_back_with_one_line(tiny: dict[str, Path],
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.runtime.onnxruntime_backend import OrtBackend

    with OrtBackend(tiny["int8"], providers=["cuda"], threads=1) as b:
        out = b.infer(random_views(1))
        providers = b.providers  # the active session's (deactivation clears them)
    err = capfd.readouterr().err.strip().splitlines()
    assert providers == ["CPUExecutionProvider"] and out.patch_maps.shape == (1, 2, 24, 24)
    assert len(err) == 1 and "CUDAExecutionProvider not usable" in err[0]


def test_ort_backend_rejects_bad_views(tiny: dict[str, Path]) -> None:
    from align3d_rt.runtime.onnxruntime_backend import OrtBackend

    b = OrtBackend(tiny["int8"])
    with pytest.raises(RuntimeError, match="outside its context"):
        b.infer(random_views(1))
    with b:
        with pytest.raises(ValueError, match="uint8"):
            b.infer(random_views(1).astype(np.float32))
