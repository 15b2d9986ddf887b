"""OpenVINO IR for a bundle: ``encoder.xml`` + ``encoder.bin`` converted from the fp32 ONNX graph.

Precisions of the IR (``IR_PRECISIONS``):
- ``fp32``: ``openvino.convert_model`` of the fp32 ONNX graph, saved with ``compress_to_fp16=False``;
- ``int8``: NNCF post-training quantization (``nncf.quantize``, ``ModelType.TRANSFORMER``: SmoothQuant
  and the transformer ignored patterns as NNCF applies them) calibrated on rendered views of the run's
  own training samples (the paths its config records, rendered with the run's settings); a run that
  records none (random-weights runs) is calibrated on views of generated clouds, and the manifest says so;
- ``int8-weights``: ``nncf.compress_weights`` (int8 weights, activations in the compute precision).

The IR files are listed and hashed in the manifest like every other file; the ``openvino`` section
records their names, the precision and how the calibration was done. export/ may import torch; the
OpenVINO runtime backend (runtime/openvino_backend.py) does not.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import IR_BIN_NAME, IR_SECTION, IR_XML_NAME
from align3d_rt.errors import Align3DError

IR_PRECISIONS = ("fp32", "int8", "int8-weights")
EXPORT_FORMATS = ("onnx", IR_SECTION)
DEFAULT_CALIBRATION_SAMPLES = 8
# Kept in float by the int8 IR (on top of NNCF's transformer patterns): softmax and the normalisations,
# the patch embedding (conv1), the aligner MLPs and the graph's own head MatMuls (the CLIP projection and
# the text products: their error is multiplied by 1/temperature before the softmax). On the tiny CLIP
# this cut the mean abs map difference to torch from 0.016 to 0.0026 (max 0.11 -> 0.06).
INT8_IGNORED_TYPES = ("Softmax", "MVN", "NormalizeL2")
INT8_IGNORED_PATTERNS = (r"^/MatMul.*", r"^/aligner/.*", r".*/conv1/.*")


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise Align3DError(f"--format openvino: openvino is not installed ({err}); pip install openvino nncf") from None
    return openvino


def convert_ir(onnx_fp32: str | os.PathLike[str]) -> Any:
    """ov.Model from the fp32 ONNX graph."""
    ov = import_openvino()
    try:
        return ov.convert_model(str(onnx_fp32))
    except Exception as err:  # noqa: BLE001 - one line, not the converter's trace
        raise Align3DError(f"{onnx_fp32}: openvino.convert_model failed ({str(err).splitlines()[0]})") from None


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


def _dataset(views: list[np.ndarray]) -> Any:
    import nncf

    # One item per view (batch 1), so subset_size counts views.
    items = [v[i:i + 1] for v in views for i in range(v.shape[0])]
    return nncf.Dataset(items), len(items)


def write_ir(stage: Path, onnx_fp32: Path, precision: str, run: Any, calibration_samples: int) -> dict[str, Any]:
    """Write encoder.xml/.bin into ``stage``; returns the manifest's ``openvino`` section (without hashes)."""
    if precision not in IR_PRECISIONS:
        raise Align3DError(f"--format openvino: precision {precision!r}; choose one of {', '.join(IR_PRECISIONS)}")
    ov = import_openvino()
    t0 = time.perf_counter()
    model = convert_ir(onnx_fp32)
    section: dict[str, Any] = {"xml": IR_XML_NAME, "bin": IR_BIN_NAME, "precision": precision,
                               "converted_from": "fp32 ONNX graph (openvino.convert_model)",
                               "openvino_version": ov.get_version(), "calibration": None, "compression": None}
    if precision == "int8":
        import nncf

        if calibration_samples < 1:
            raise Align3DError(f"--calibration-samples {calibration_samples}: must be at least 1")
        views, calib = calibration_views(run, calibration_samples)
        data, n = _dataset(views)
        if calib["source"].startswith("generated"):
            print(f"align3d-rt export: calibrating int8 on generated clouds ({calib['reason']})", file=sys.stderr)
        with _quiet():
            scope = nncf.IgnoredScope(types=list(INT8_IGNORED_TYPES), patterns=list(INT8_IGNORED_PATTERNS),
                                      validate=False)
            model = nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=n,
                                  ignored_scope=scope)
        section["calibration"] = dict(calib, views=n, calibration_samples=calibration_samples)
        section["compression"] = {"method": "nncf.quantize", "model_type": "TRANSFORMER",
                                  "ignored_types": list(INT8_IGNORED_TYPES),
                                  "ignored_patterns": list(INT8_IGNORED_PATTERNS), "subset_size": n,
                                  "nncf_version": nncf.__version__}
    elif precision == "int8-weights":
        import nncf

        with _quiet():
            model = nncf.compress_weights(model)
        section["compression"] = {"method": "nncf.compress_weights", "mode": "INT8_ASYM (default)",
                                  "nncf_version": nncf.__version__}
    ov.save_model(model, str(stage / IR_XML_NAME), compress_to_fp16=False)
    section["seconds"] = round(time.perf_counter() - t0, 2)
    return section


def run_ir(xml: Path, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the IR once on the CPU in f32 (the post-export check)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    res = compiled(views)
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
            raise Align3DError(f"{xml}: batch {b} gave outputs {maps.shape} {probs.shape}; the batch axis is not dynamic")
        diffs[str(b)] = float(max(np.abs(maps - ref_maps[:b]).max(), np.abs(probs - ref_probs[:b]).max()))
    worst = max(diffs.values())
    if precision == "fp32" and worst > tol:
        raise Align3DError(f"{xml}: fp32 IR differs from torch by {worst:.2e} (> {tol:g})")
    return {"batches": list(batches), "max_abs_diff_vs_torch": diffs, "input": "random uint8 views",
            "inference_precision": "f32"}


class _quiet:
    """NNCF logs progress bars and INFO lines; keep export output to our own lines."""

    def __enter__(self) -> None:
        import logging
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")
        import nncf

        self._nncf = nncf
        self._level = logging.getLogger("nncf").level
        nncf.set_log_level(logging.ERROR)  # also hides NNCF's progress bars

    def __exit__(self, *exc: object) -> None:
        self._nncf.set_log_level(self._level or 20)
        self._ctx.__exit__(*exc)
