"""OpenVINO IR for a bundle: ``encoder.xml`` + ``encoder.bin`` converted from the fp32 ONNX graph.

Precisions of the IR (``IR_PRECISIONS``):
- ``fp32``: ``openvino.convert_model`` of the fp32 ONNX graph, saved with ``compress_to_fp16=False``;
- ``int8``: NNCF post-training quantization (``nncf.quantize``, ``ModelType.TRANSFORMER``: SmoothQuant
  and the transformer ignored patterns as NNCF applies them) calibrated on rendered views of the run's
  own training samples (the paths its config records, rendered with the run's settings); a run that
  records none (random-weights runs) is calibrated on views of generated clouds, and the manifest says so;
- ``int8-weights``: ``nncf.compress_weights`` (int8 weights, activations in the compute precision).

Conversion and compression run in a child process (openvino_worker.py). The IR files are listed and
hashed in the manifest like every other file; the ``openvino`` section records their names, the
precision and how the calibration was done. export/ may import torch; the
OpenVINO runtime backend (runtime/openvino_backend.py) does not.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import IR_BIN_NAME, IR_XML_NAME
from align3d_rt.errors import Align3DError
from align3d_rt.vocabulary import IR_PRECISIONS as _IR_PRECISIONS
from align3d_rt.vocabulary import ExportFormat, words

IR_PRECISIONS = words(_IR_PRECISIONS)
EXPORT_FORMATS = words(ExportFormat)  # the OpenVINO format is named after its manifest section (IR_SECTION)
# What ``export --format openvino`` writes without --precision: the route that won bench/bench_encoder.py
# (docs/bench/cpu-vitl-openvino-2026-12-03): the NNCF int8 IR, run with the bf16 hint where the CPU has it.
DEFAULT_IR_PRECISION = "int8"
DEFAULT_CALIBRATION_SAMPLES = 8
WORKER_ATTEMPTS = 2
# Kept in float by the int8 IR (on top of NNCF's transformer patterns): softmax and the normalisations,
# the patch embedding (conv1), the aligner MLPs and the graph's own head MatMuls (the CLIP projection and
# the text products: their error is multiplied by 1/temperature before the softmax). On the tiny CLIP
# this cut the mean abs map difference to torch from 0.016 to 0.0026 (max 0.11 -> 0.06).
# ScaledDotProductAttention (ordinary and V-V attention; OpenVINO's conversion fuses the exported
# MatMul/Softmax/MatMul into it and the CPU plugin runs it as one MHA kernel) also stays in float: on
# ViT-L-14-336 with AMX its int8 MHA kernels took 2455 ms against 1259 ms in bf16 (profile, 9 views) at
# the same map error (docs/bench/cpu-vitl-openvino-2026-12-03).
INT8_IGNORED_TYPES = ("Softmax", "MVN", "NormalizeL2", "ScaledDotProductAttention")
INT8_IGNORED_PATTERNS = (r"^/MatMul.*", r"^/aligner/.*", r".*/conv1/.*")
# SmoothQuant strength for MatMuls (NNCF's TRANSFORMER default is 0.95; a negative alpha turns it off).
# Off: on ViT-L-14-336 (random weights, 9 views) it cut the max abs map difference to torch from 0.11 to
# 0.011 (mean 0.012 -> 0.0015) at the same speed, and it removes a Multiply before every FullyConnected.
INT8_SMOOTH_QUANT_ALPHA = -1.0
# NNCF quantization preset of the int8 IR: "performance" (symmetric activations, no zero-point subtraction
# in front of the int8 FullyConnected layers) instead of NNCF's TRANSFORMER default "mixed" (asymmetric
# activations). On ViT-L-14-336 with AMX it was faster in both committed runs of bench/bench_encoder.py
# (1.03x the mixed preset, docs/bench/cpu-vitl-openvino-2026-12-03b; 1.01-1.05x in every one of 5 rounds,
# docs/bench/cpu-vitl-openvino-2026-12-03c) at a max abs map difference to torch of 0.014 (mixed: 0.013).
INT8_PRESET = "performance"
INT8_PRESETS = ("performance", "mixed")


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise Align3DError(f"--format openvino: openvino is not installed ({err}); pip install openvino nncf") from None
    return openvino


def compute_precision_on_this_cpu() -> dict[str, str]:
    """The compute precision the OpenVINO backend's ``auto`` hint gives this IR on the exporting CPU: bf16
    where the CPU reports BF16 (AMX / AVX512-BF16), else f32 (``--precision-hint f32`` forces f32)."""
    from align3d_rt.loaders import openvino_core

    caps = list(openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"hint": "auto", "on_export_cpu": "bf16" if "BF16" in caps else "f32",
            "rule": "bf16 where the CPU reports BF16 (AMX/AVX512-BF16), else f32; int8 layers run in int8"}


def calibration_views(run: Any, count: int, seed: int = 0) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Up to ``count`` samples' views (each (V,S,S,3) uint8) and a description of where they came from.

    The run's own training samples (config ``samples`` under ``root``), rendered with the run's settings
    (dataset point size per category); a run recording none falls back to generated clouds."""
    from align3d_rt.render import render_views, settings_for

    config = run.config
    recorded = [str(p) for p in config.get("samples") or []]
    dataset, category = str(config.get("dataset") or ""), str(config.get("category") or "")
    views: list[np.ndarray] = []
    used: list[str] = []
    problem = "the run records no training samples"
    if recorded:
        try:
            samples = _recorded_samples(config, recorded, count)
        except Exception as err:  # noqa: BLE001 - missing data: fall back, and say why in the manifest
            samples, problem = [], f"its recorded samples could not be read ({type(err).__name__}: {err})"
        for sample in samples:
            settings = _sample_settings(run.render_settings, dataset or sample.dataset, category or sample.category,
                                        settings_for)
            views.append(np.ascontiguousarray(render_views(sample.points, settings).images))
            used.append(str(sample.source or sample.sample_id))
    if views:
        return views, {"source": "run training samples", "dataset": dataset, "category": category,
                       "samples": used, "num_samples": len(views)}
    from align3d_rt.render.shapes import organized_object, unorganized_cloud

    for i in range(count):
        pts = organized_object(seed=seed + i)[0] if i % 2 == 0 else unorganized_cloud(40_000, seed=seed + i)
        views.append(np.ascontiguousarray(render_views(pts, run.render_settings).images))
    return views, {"source": "generated clouds (fallback)", "reason": problem,
                   "samples": [f"{'organized_object' if i % 2 == 0 else 'unorganized_cloud'}(seed={seed + i})"
                               for i in range(count)], "num_samples": count}


def _sample_settings(base: Any, dataset: str, category: str, settings_for: Any) -> Any:
    if not dataset:
        return base
    try:
        return settings_for(dataset, category, base=base)
    except ValueError:
        return base


def _recorded_samples(config: dict[str, Any], recorded: list[str], count: int) -> list[Any]:
    """The first ``count`` recorded samples, loaded as the training loaded them (dataset readers)."""
    from align3d_rt.data.readers import list_samples, load_point_file

    dataset, root, category = config.get("dataset"), config.get("root"), config.get("category")
    wanted = recorded[:count]
    if dataset and root and category:
        refs = {str(r.path): r for r in list_samples(dataset, root, category, "test")}
        if all(p in refs for p in wanted):
            return [refs[p].load() for p in wanted]
    return [load_point_file(Path(p)) for p in wanted]


def write_ir(stage: Path, onnx_fp32: Path, precision: str, run: Any, calibration_samples: int) -> dict[str, Any]:
    """Write encoder.xml/.bin into ``stage``; returns the manifest's ``openvino`` section (without hashes).

    Conversion and NNCF compression run in a child process (openvino_worker.py), away from torch,
    Open3D and numba's thread pools."""
    if precision not in IR_PRECISIONS:
        raise Align3DError(f"--format openvino: precision {precision!r}; choose one of {', '.join(IR_PRECISIONS)}")
    import_openvino()
    t0 = time.perf_counter()
    section: dict[str, Any] = {"xml": IR_XML_NAME, "bin": IR_BIN_NAME, "precision": precision,
                               "converted_from": "fp32 ONNX graph (openvino.convert_model)",
                               "calibration": None, "compression": None}
    views: np.ndarray | None = None
    calib: dict[str, Any] | None = None
    if precision == "int8":
        if calibration_samples < 1:
            raise Align3DError(f"--calibration-samples {calibration_samples}: must be at least 1")
        rendered, calib = calibration_views(run, calibration_samples)
        if calib["source"].startswith("generated"):
            print(f"align3d-rt export: calibrating int8 on generated clouds ({calib['reason']})", file=sys.stderr)
        views = np.concatenate(rendered, axis=0)
    facts, attempts = convert_and_compress(onnx_fp32, stage / IR_XML_NAME, precision, views)
    section["openvino_version"] = facts["openvino_version"]
    section["compute_precision"] = compute_precision_on_this_cpu()
    section["worker_attempts"] = attempts
    if precision == "int8":
        assert calib is not None
        n = int(facts["subset_size"])
        section["calibration"] = dict(calib, views=n, calibration_samples=calibration_samples)
        section["compression"] = {"method": "nncf.quantize", "model_type": "TRANSFORMER",
                                  "ignored_types": list(INT8_IGNORED_TYPES),
                                  "ignored_patterns": list(INT8_IGNORED_PATTERNS), "subset_size": n,
                                  "smooth_quant_alpha_matmul": INT8_SMOOTH_QUANT_ALPHA, "preset": INT8_PRESET,
                                  "nncf_version": facts["nncf_version"]}
    elif precision == "int8-weights":
        section["compression"] = {"method": "nncf.compress_weights", "mode": "INT8_ASYM (default)",
                                  "nncf_version": facts["nncf_version"]}
    section["seconds"] = round(time.perf_counter() - t0, 2)
    return section


def convert_and_compress(onnx_fp32: Path, xml: Path, precision: str, views: np.ndarray | None = None,
                         preset: str = INT8_PRESET) -> tuple[dict[str, Any], int]:
    """Convert the fp32 ONNX graph to IR at ``xml`` (+ .bin), NNCF-compressed for int8 / int8-weights.

    ``views`` (N,S,S,3) uint8 calibrate int8 (one NNCF item per view); ``preset``: NNCF's quantization
    preset for int8, ``INT8_PRESETS`` ("performance": symmetric activations, the default; "mixed":
    asymmetric activations, NNCF's TRANSFORMER default). Runs in the worker process; returns the worker's
    facts (versions, subset size) and how many attempts it took."""
    if preset not in INT8_PRESETS:
        raise ValueError(f"preset {preset!r}: choose one of {', '.join(INT8_PRESETS)}")
    job: dict[str, Any] = {"onnx": str(onnx_fp32), "xml": str(xml), "precision": precision,
                           "ignored_types": list(INT8_IGNORED_TYPES), "ignored_patterns": list(INT8_IGNORED_PATTERNS),
                           "smooth_quant_alpha": INT8_SMOOTH_QUANT_ALPHA, "preset": preset}
    with tempfile.TemporaryDirectory(prefix="align3d_ir_") as tmp:
        if views is not None:
            job["views"] = str(Path(tmp) / "calibration_views.npy")
            np.save(job["views"], np.ascontiguousarray(views, dtype=np.uint8))
        return _run_worker(job, onnx_fp32)


def _run_worker(job: dict[str, Any], onnx_fp32: Path, attempts: int = WORKER_ATTEMPTS) -> tuple[dict[str, Any], int]:
    """Run openvino_worker in a fresh interpreter; a crash (killed by a signal) is retried, with a notice."""
    cmd = [sys.executable, "-m", "align3d_rt.export.openvino_worker", json.dumps(job)]
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very align3d_rt
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1]), attempt
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR: ")]
        if proc.returncode > 0:
            reason = errors[-1][len("ERROR: "):] if errors else (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise Align3DError(f"{onnx_fp32}: OpenVINO {job['precision']} conversion failed ({reason})")
        name = _signal_name(-proc.returncode)
        if attempt < attempts:
            print(f"align3d-rt export: the OpenVINO/NNCF worker died ({name}); retrying ({attempt + 1}/{attempts})",
                  file=sys.stderr)
    raise Align3DError(f"{onnx_fp32}: the OpenVINO/NNCF worker died ({name}) {attempts} times; "
                       "no IR written")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_ir(xml: Path, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the IR once on the CPU in f32 (the post-export check)."""
    from align3d_rt.loaders import OpenVinoCompiler

    res = OpenVinoCompiler(xml, "CPU", "f32")().model(views)
    return np.asarray(res[0], np.float32), np.asarray(res[1], np.float32)


def check_ir(xml: Path, graph: Any, image_size: int, precision: str, batches: tuple[int, ...] = (1, 3),
             tol: float = 1e-4) -> dict[str, Any]:
    """Run the IR (f32 compute) at each batch size and compare with torch; an fp32 IR must agree to ``tol``."""
    import torch

    from align3d_rt.export.onnx_export import _example_views

    views = _example_views(max(batches), image_size, 1)
    with torch.no_grad():
        ref_maps, ref_probs = (t.numpy() for t in graph(torch.from_numpy(views)))
    diffs = {}
    for b in batches:
        maps, probs = run_ir(xml, views[:b])
        if maps.shape[0] != b or probs.shape != (b, 2):
            raise Align3DError(f"{xml}: batch {b} gave outputs {maps.shape} {probs.shape}; "
                               "the batch axis is not dynamic")
        diffs[str(b)] = float(max(np.abs(maps - ref_maps[:b]).max(), np.abs(probs - ref_probs[:b]).max()))
    worst = max(diffs.values())
    if precision == "fp32" and worst > tol:
        raise Align3DError(f"{xml}: fp32 IR differs from torch by {worst:.2e} (> {tol:g})")
    return {"batches": list(batches), "max_abs_diff_vs_torch": diffs, "input": "random uint8 views",
            "inference_precision": "f32"}
