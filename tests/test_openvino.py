"""OpenVINO backend: IR export (fp32 / NNCF int8), fp32 parity with torch (1e-4), int8 AUROC parity, bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_support import random_views

from align3d_rt.errors import BackendUnavailable, BundleError, OptionError
from align3d_rt.eval.parity import FP32_MAX_ABS, compare, parity_precision
from align3d_rt.export.openvino_export import DEFAULT_CALIBRATION_SAMPLES

pytest.importorskip("openvino")

@pytest.fixture(scope="module")
def ov(signal_root: Path) -> dict[str, Path]:
    """The trained signal run (tests/parity_support.py) and its bundles: ONNX fp32, OpenVINO fp32 through the
    CLI, OpenVINO int8 (calibrated on the run's recorded training samples) through the CLI's default."""
    from parity_support import signal_bundle, signal_run

    from align3d_rt.cli import main

    out = {"run": signal_run(signal_root), "onnx_fp32": signal_bundle(signal_root, "fp32"),
           "fp32": signal_root / "ov_fp32_cli"}
    if not (out["fp32"] / "manifest.json").is_file():
        assert main(["export", "--run", str(out["run"]), "--out", str(out["fp32"]), "--format", "openvino",
                     "--precision", "fp32"]) == 0
    out["int8"] = signal_root / "ov_default_cli"  # no --precision: the measured default (int8)
    if not (out["int8"] / "manifest.json").is_file():
        assert main(["export", "--run", str(out["run"]), "--out", str(out["int8"]), "--format", "openvino"]) == 0
    return out


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN3D_CACHE", str(tmp_path_factory.getbasetemp() / "ov_cache"))


def _torch_reference(run: Path, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from align3d_rt.runtime.torch_backend import TorchBackend

    with TorchBackend.from_run(run) as tb:
        out = tb.infer(views)
    return out.patch_maps, out.global_probs


def test_manifest_lists_and_hashes_the_ir(ov: dict[str, Path]) -> None:
    from align3d_rt.artifacts.bundle import load_bundle

    b = load_bundle(ov["fp32"])
    assert b.precision == "fp32" and b.ir is not None
    assert {b.ir["xml"], b.ir["bin"], "encoder.onnx"} <= set(b.manifest["files"])
    assert b.ir["precision"] == "fp32" and b.ir["calibration"] is None
    assert max(b.ir["export_check"]["max_abs_diff_vs_torch"].values()) <= FP32_MAX_ABS
    q = load_bundle(ov["int8"]).ir
    assert q["precision"] == "int8" and q["compression"]["method"] == "nncf.quantize"
    calib = q["calibration"]  # the trained run records its 4 training clouds: NNCF calibrates on their views
    assert calib["source"] == "run training samples" and calib["num_samples"] == 4 and len(calib["samples"]) == 4
    assert calib["calibration_samples"] == DEFAULT_CALIBRATION_SAMPLES and q["worker_attempts"] >= 1


def test_attention_is_fused_and_stays_float_in_the_int8_ir(ov: dict[str, Path]) -> None:
    """Each attention (ordinary and DPAM V-V) is one ScaledDotProductAttention op in the IR (OpenVINO's
    conversion fuses the exported MatMul/Softmax/MatMul); the int8 IR quantizes the linear layers but feeds
    no attention from a FakeQuantize (its int8 MHA kernel was slower than bf16), and the manifest records
    the NNCF settings and the compute precision."""
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.export.openvino_export import INT8_PRESET, INT8_SMOOTH_QUANT_ALPHA
    from align3d_rt.loaders import openvino_core
    from align3d_rt.model.clip_backbone import TINY_CONFIG, TINY_NAME, dpam_start_for

    layers = int(TINY_CONFIG["vision_cfg"]["layers"])
    want = layers + layers - dpam_start_for(layers)  # ordinary attention per block + V-V per DPAM block
    for ir in ("fp32", "int8"):
        bundle = load_bundle(ov[ir])
        assert bundle.manifest["clip"]["name"] == TINY_NAME
        ops = openvino_core().read_model(str(ov[ir] / bundle.ir["xml"])).get_ordered_ops()
        sdpa = [op for op in ops if op.get_type_name() == "ScaledDotProductAttention"]
        assert len(sdpa) == want, (ir, len(sdpa))
        feeds = {i.get_source_output().get_node().get_type_name() for op in sdpa for i in op.inputs()}
        assert "FakeQuantize" not in feeds, (ir, feeds)
        fq = sum(op.get_type_name() == "FakeQuantize" for op in ops)
        assert (fq > 0) == (ir == "int8"), (ir, fq)
        # the PERFORMANCE preset: every activation range symmetric (low = -high * 128/127, no zero point)
        for op in ops:
            if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
                low, high = (float(op.input_value(i).get_node().get_data().ravel()[0]) for i in (1, 2))
                assert abs(low / high + 128 / 127) < 1e-4, (op.get_friendly_name(), low, high)
    q = load_bundle(ov["int8"]).ir
    assert q["precision"] == "int8" and "ScaledDotProductAttention" in q["compression"]["ignored_types"]
    assert q["compression"]["smooth_quant_alpha_matmul"] == INT8_SMOOTH_QUANT_ALPHA
    assert q["compression"]["preset"] == INT8_PRESET == "performance"
    caps = openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert q["compute_precision"]["on_export_cpu"] == ("bf16" if "BF16" in caps else "f32")


def test_fp32_ir_matches_torch_and_bf16_hint_runs(ov: dict[str, Path]) -> None:
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.runtime import registry

    views = random_views(3)
    ref_maps, ref_probs = _torch_reference(ov["run"], views)
    bundle = load_bundle(ov["fp32"])
    with registry.create_runner("openvino", bundle, precision_hint="f32") as r:
        out = r.infer(views)
        assert r.precision_hint == "f32" and r.detector_info["precision"] == "fp32"
    assert out.patch_maps.shape == ref_maps.shape and out.global_probs.shape == ref_probs.shape
    assert np.abs(out.patch_maps - ref_maps).max() <= FP32_MAX_ABS
    assert np.abs(out.global_probs - ref_probs).max() <= FP32_MAX_ABS
    with registry.create_runner("openvino", bundle, max_batch=2) as r:  # auto hint: bf16 where the CPU has it
        fast = r.infer(views)
    assert np.isfinite(fast.patch_maps).all() and np.abs(fast.patch_maps - ref_maps).max() < 0.1


def test_throughput_hint_splits_views_over_requests(ov: dict[str, Path]) -> None:
    """THROUGHPUT runs a chunk as parts on parallel requests; the result equals one LATENCY call, in order."""
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.runtime import registry

    views = random_views(5, seed=3)
    bundle = load_bundle(ov["fp32"])
    with registry.create_runner("openvino", bundle, precision_hint="f32") as r:
        one = r.infer(views)
    with registry.create_runner("openvino", bundle, precision_hint="f32", performance_hint="THROUGHPUT",
                                num_streams=2) as r:
        assert r._requests == 2 and r._pool is not None
        split = r.infer(views)
    assert split.patch_maps.shape == one.patch_maps.shape and split.global_probs.shape == one.global_probs.shape
    assert np.abs(split.patch_maps - one.patch_maps).max() <= 1e-5
    assert np.abs(split.global_probs - one.global_probs).max() <= 1e-5


def test_ir_parity_on_the_signal_fixture(ov: dict[str, Path], signal_root: Path, record_figure) -> None:  # noqa: ANN001
    """Every OpenVINO route meets the documented AUROC tolerance on the trained signal fixture: the int8 IR
    with f32 compute (NNCF error alone) and with the auto hint (bf16 compute where the CPU has it), and the
    fp32 IR computed in bf16 ('fp32/bf16'; on a CPU without BF16 it falls back to f32 and fp32 rules apply)."""
    from parity_support import assert_auroc_parity, signal_reference, signal_samples

    from align3d_rt.eval.parity import score_all
    from align3d_rt.runtime.detector import Detector

    samples, reference = signal_samples(signal_root), signal_reference(signal_root)
    for ir, hint in (("int8", "f32"), ("int8", "auto"), ("fp32", "bf16")):
        det = Detector.from_bundle(ov[ir], backend="openvino", precision_hint=hint)
        test = score_all(det, samples, batch_size=4)
        precision = parity_precision("fp32", det.info)
        compute = det.info.get("compute_precision")
        assert precision == ("int8" if ir == "int8" else "fp32/bf16" if compute == "bf16" else "fp32"), precision
        report = compare(samples, reference, test, precision)
        record_figure(f"openvino {ir} IR, {det.info.get('compute_precision')} compute: AUROC diff point "
                      f"{report.auroc['point']['diff']:+.5f}, object {report.auroc['object']['diff']:+.5f}; "
                      f"max abs view maps {report.max_abs['view_maps']:.4f}")
        assert_auroc_parity(samples, reference, report, f"openvino {ir} {hint}")


def test_parity_cli_with_openvino_fp32_and_f32_hint(ov: dict[str, Path], tmp_path: Path) -> None:
    from align3d_rt.cli import main

    rng = np.random.default_rng(5)
    pts = rng.normal(size=(3000, 3)).astype(np.float32)
    np.save(tmp_path / "cloud.npy", 0.05 * pts / np.linalg.norm(pts, axis=1, keepdims=True))
    out = tmp_path / "parity.json"
    rc = main(["parity", "--run", str(ov["run"]), "--bundle", str(ov["fp32"]), str(tmp_path / "cloud.npy"),
               "--backend", "openvino", "--precision-hint", "f32", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0 and report["passed"] and report["precision"] == "fp32", report
    assert report["info"]["compute_precision"] == "f32"
    assert report["max_abs"]["view_maps"] <= FP32_MAX_ABS


def test_parity_precision_of_bf16_compute() -> None:
    assert parity_precision("fp32", {"precision": "fp32", "compute_precision": "bf16"}) == "fp32/bf16"
    assert parity_precision("fp32", {"precision": "fp32", "compute_precision": "f32"}) == "fp32"
    assert parity_precision("int8", {}) == "int8"


# ---- bad input: one line, never an OpenVINO trace -------------------------------------------------------
def test_bundle_without_ir_is_refused(ov: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from align3d_rt.cli import main
    from align3d_rt.runtime.detector import Detector

    with pytest.raises(BundleError, match="has no OpenVINO IR.*--format openvino"):
        Detector.from_bundle(ov["onnx_fp32"], backend="openvino").runner  # noqa: B018 - the property raises
    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", str(ov["onnx_fp32"]), "--backend", "openvino",
               "--out", str(tmp_path / "o"), "--no-ply", "--no-png"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no OpenVINO IR" in err[0] and str(ov["onnx_fp32"]) in err[0], err


def test_tampered_ir_is_refused(ov: dict[str, Path], tmp_path: Path) -> None:
    from align3d_rt.artifacts.bundle import load_bundle

    bad = tmp_path / "bad"
    shutil.copytree(ov["fp32"], bad)
    with open(bad / "encoder.bin", "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=r"encoder\.bin: sha256 differs"):
        load_bundle(bad)
    shutil.copy(ov["fp32"] / "encoder.bin", bad / "encoder.bin")
    (bad / "encoder.xml").unlink()
    with pytest.raises(BundleError, match=r"encoder\.xml: missing"):
        load_bundle(bad)


def test_unknown_device_and_bad_hints(ov: dict[str, Path]) -> None:
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.runtime import registry
    from align3d_rt.runtime.openvino_backend import choose_precision_hint

    bundle = load_bundle(ov["fp32"])
    with pytest.raises(BackendUnavailable, match=r"device NPU is not available here \(OpenVINO reports: .*CPU"):
        registry.create_runner("openvino", bundle, device_name="NPU").activate()
    with pytest.raises(OptionError, match="precision hint 'int4'"):  # bad values are bad input
        registry.create_runner("openvino", bundle, precision_hint="int4")
    with pytest.raises(OptionError, match="performance hint 'FAST'"):
        registry.create_runner("openvino", bundle, performance_hint="FAST")
    # A CPU without BF16: auto picks f32; an explicit bf16 falls back to f32 with one notice line.
    assert choose_precision_hint("auto", ["FP32", "INT8"], "CPU") == ("f32", None)
    assert choose_precision_hint("auto", ["BF16", "FP32"], "CPU") == ("bf16", None)
    hint, notice = choose_precision_hint("bf16", ["FP32", "INT8"], "CPU")
    assert hint == "f32" and "cannot compute in bf16" in notice and "\n" not in notice


def test_infer_refuses_an_altered_onnx_graph_on_the_openvino_route(ov: dict[str, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The OpenVINO route compiles the IR while the ONNX graph (which it never runs) is still hashing (spec
    2.4); an altered graph is still refused before anything is scored or written: exit 2, one line."""
    import shutil

    from align3d_rt.cli import main

    case = tmp_path / "b"
    shutil.copytree(ov["fp32"], case)
    blob = bytearray((case / "encoder.onnx").read_bytes())
    blob[-1] ^= 0xFF
    (case / "encoder.onnx").write_bytes(bytes(blob))
    np.save(tmp_path / "c.npy", np.random.default_rng(0).random((500, 3)).astype(np.float32))
    out = tmp_path / "o"
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", str(case), "--backend", "openvino", "--out", str(out),
               "--no-ply"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert f"{case / 'encoder.onnx'}: sha256 differs" in lines[0]
    assert not out.exists()


def test_auto_device_runs_on_this_cpu(ov: dict[str, Path]) -> None:
    """AUTO (OpenVINO picks the device; only the CPU here) gives the CPU's result."""
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.runtime import registry

    views = random_views(1, seed=5)
    bundle = load_bundle(ov["fp32"])
    with registry.create_runner("openvino", bundle, precision_hint="f32") as r:
        cpu = r.infer(views)
    with registry.create_runner("openvino", bundle, device_name="AUTO", precision_hint="f32") as r:
        auto = r.infer(views)
        assert r.detector_info["openvino_device"] == "AUTO"
    assert np.abs(auto.patch_maps - cpu.patch_maps).max() <= 1e-5


def test_runner_option_refused_by_other_backends(ov: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    from align3d_rt.cli import main

    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", str(ov["fp32"]), "--backend", "onnxruntime",
               "--precision-hint", "bf16", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--precision-hint" in err[0] and "openvino" in err[0], err


def test_infer_on_a_bundle_picks_its_fastest_backend_and_says_so(ov: dict[str, Path], tmp_path: Path) -> None:
    """No --backend: the default int8 IR bundle runs on OpenVINO (the measured fastest CPU route), the ONNX-only
    bundle on onnxruntime; scores.json names the backend, its precision and compute precision, and why."""
    import json

    from align3d_rt.cli import main
    from align3d_rt.runtime import registry

    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))

    def detector(bundle: Path, *extra: str) -> dict:
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        assert main(["infer", str(tmp_path / "c.npy"), "--bundle", str(bundle), "--out", str(out), "--no-png",
                     "--no-ply", *extra]) == 0
        return json.loads((out / "scores.json").read_text())["detector"]

    chosen = detector(ov["int8"])
    assert chosen["backend"] == "openvino" and chosen["precision"] == "int8"
    assert chosen["compute_precision"] in ("bf16", "f32") and "openvino > onnxruntime" in chosen["backend_choice"]
    onnx_only = detector(ov["onnx_fp32"])
    assert onnx_only["backend"] == "onnxruntime" and onnx_only["precision"] == "fp32"
    asked = detector(ov["int8"], "--backend", "onnxruntime")
    assert asked["backend"] == "onnxruntime" and asked["backend_choice"] == "asked"
    assert registry.fastest_bundle_backend(("onnx", "openvino"), "cuda") == registry.default_backend("bundle")


def test_fastest_bundle_backend_skips_what_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from align3d_rt.runtime import registry

    assert registry.fastest_bundle_backend(("onnx", "openvino"), "cpu") == "openvino"
    assert registry.fastest_bundle_backend(("onnx", "openvino"), "auto") == "openvino"
    assert registry.fastest_bundle_backend(("onnx",), "cpu") == "onnxruntime"
    missing = dataclasses.replace(registry.get("openvino"), needs=("no_such_package_here",))
    monkeypatch.setitem(registry._BACKENDS, "openvino", missing)
    assert not missing.installed()
    assert registry.fastest_bundle_backend(("onnx", "openvino"), "cpu") == "onnxruntime"


def test_export_refuses_mismatched_format_and_precision(ov: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from align3d_rt.cli import main

    for argv in (["--format", "openvino", "--precision", "fp16"], ["--precision", "int8-weights"],
                 ["--format", "openvino", "--precision", "fp32", "--calibration-samples", "3"]):
        rc = main(["export", "--run", str(ov["run"]), "--out", str(tmp_path / "x"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, (argv, err)
    assert not (tmp_path / "x").exists()


def test_int8_calibration_without_recorded_samples_uses_generated_clouds(ov: dict[str, Path], tmp_path: Path) -> None:
    """A run that records no training samples calibrates on generated clouds, and says so with a reason."""
    from align3d_rt.artifacts import run_dir as rd
    from align3d_rt.export.openvino_export import calibration_views

    run_path = tmp_path / "run"
    shutil.copytree(ov["run"], run_path)
    config = rd.read_config(run_path)
    config.pop("samples", None)
    rd.write_config(run_path, config)
    views, info = calibration_views(rd.load_run(run_path), 2)
    assert info["source"].startswith("generated") and info["reason"] and info["num_samples"] == 2 == len(views)
    assert views[0].dtype == np.uint8 and views[0].shape[1:] == (336, 336, 3)


@pytest.mark.heavy
def test_vit_l_ir_fp32_matches_torch_and_int8_diff_reported(tmp_path: Path) -> None:
    """ViT-L-14-336 (random weights): fp32 IR vs torch <= 1e-4 on one view; the int8 IR's map difference printed
    and below 0.05."""
    from export_support import make_run_dir

    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.export.onnx_export import export_bundle
    from align3d_rt.runtime.openvino_backend import OpenVinoBackend
    from align3d_rt.runtime.torch_backend import TorchBackend

    run = make_run_dir(tmp_path / "run", clip="ViT-L-14-336", weights="random", dim=768)
    views = random_views(1, seed=11)
    with TorchBackend.from_run(run) as tb:
        ref = tb.infer(views)
    fp32 = load_bundle(export_bundle(run, tmp_path / "ov_fp32", fmt="openvino"))
    with OpenVinoBackend(fp32, precision_hint="f32", cache=False) as r:
        got = r.infer(views)
    assert got.patch_maps.shape == ref.patch_maps.shape == (1, 2, 24, 24)
    assert np.abs(got.patch_maps - ref.patch_maps).max() <= FP32_MAX_ABS
    assert np.abs(got.global_probs - ref.global_probs).max() <= FP32_MAX_ABS
    # 2 calibration samples (18 views): NNCF took ~5 min for 18 ViT-L views on the 2-core CI machine.
    int8 = load_bundle(export_bundle(run, tmp_path / "ov_int8", precision="int8", fmt="openvino",
                                     calibration_samples=2))
    for hint in ("f32", "auto"):
        with OpenVinoBackend(int8, precision_hint=hint, cache=False) as r:
            q = r.infer(views)
            used = r.precision_hint
        diff = float(np.abs(q.patch_maps - ref.patch_maps).max())
        print(f"ViT-L-14-336 int8 IR ({used} compute): max abs map diff vs torch {diff:.4f}, "
              f"global {float(np.abs(q.global_probs - ref.global_probs).max()):.4f}")
        assert np.isfinite(q.patch_maps).all()
        # Attention in float and SmoothQuant off: bench_encoder measured 0.011 (f32) / 0.013 (bf16) on 9 random
        # views, against 0.09-0.14 with NNCF's SmoothQuant and int8 attention.
        assert diff < 0.05, (used, diff)


def test_worker_failure_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    """A conversion error in the child becomes one Align3DError line naming the ONNX file."""
    from align3d_rt.errors import Align3DError
    from align3d_rt.export.openvino_export import write_ir

    bad = tmp_path / "encoder.onnx"
    bad.write_bytes(b"not an onnx graph")
    stage = tmp_path / "stage"
    stage.mkdir()
    with pytest.raises(Align3DError) as info:
        write_ir(stage, bad, "fp32", run=None, calibration_samples=1)
    message = str(info.value)
    assert message.startswith(f"{bad}: OpenVINO fp32 conversion failed") and "\n" not in message
    assert list(stage.iterdir()) == []


def test_worker_crash_is_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    """A worker killed by a signal is retried once with a notice; two crashes end in one error line."""
    import signal
    import subprocess

    from align3d_rt.errors import Align3DError
    from align3d_rt.export import openvino_export as ovx

    calls: list[list[str]] = []

    def crashing(cmd: list[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, -signal.SIGSEGV, "", "Fatal Python error: Segmentation fault")

    monkeypatch.setattr(ovx.subprocess, "run", crashing)
    with pytest.raises(Align3DError, match=r"worker died \(SIGSEGV\) 2 times; no IR written"):
        ovx._run_worker({"precision": "int8"}, tmp_path / "encoder.onnx")
    assert len(calls) == 2 and calls[0][1:3] == ["-m", "align3d_rt.export.openvino_worker"]
    assert "retrying (2/2)" in capsys.readouterr().err
