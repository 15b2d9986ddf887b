"""Child process that converts the fp32 ONNX graph to OpenVINO IR and compresses it with NNCF.

``openvino_export.write_ir`` runs this module with ``python -m`` in a fresh process that imports only
numpy, openvino and nncf (torch is kept out, see ``KEPT_OUT``). NNCF's statistics collection crashed
(SIGSEGV in ``ov.Model.get_ops``) now and then when it ran inside a process that had already loaded
torch, Open3D and numba's thread pools; in a process of its own it has not, and a crash there ends
as a one-line export error, never as a dead CLI or test run.

Input: one JSON job on argv[1] (``onnx``, ``xml``, ``precision``, ``views`` (.npy of (N,S,S,3) uint8
calibration views, int8 only), ``ignored_types``, ``ignored_patterns``, ``smooth_quant_alpha`` (MatMul
SmoothQuant strength; negative = off), ``preset`` ("performance" or "mixed"; absent: "mixed")). Output: one JSON line on
stdout with the compression facts; problems exit 2 with ``ERROR: ...`` on stderr.
"""
from __future__ import annotations

import json
import logging
import sys
import warnings
from typing import Any

import numpy as np


def convert_and_compress(job: dict[str, Any]) -> dict[str, Any]:
    """Do one job; returns what the manifest records about the compression."""
    import openvino as ov

    model = ov.convert_model(job["onnx"])
    facts: dict[str, Any] = {"openvino_version": ov.get_version()}
    precision = job["precision"]
    if precision in ("int8", "int8-weights"):
        import nncf

        nncf.set_log_level(logging.ERROR)  # also hides NNCF's progress bars
        facts["nncf_version"] = nncf.__version__
        if precision == "int8":
            views = np.load(job["views"], allow_pickle=False)
            items = [views[i:i + 1] for i in range(views.shape[0])]  # batch 1: subset_size counts views
            scope = nncf.IgnoredScope(types=list(job["ignored_types"]), patterns=list(job["ignored_patterns"]),
                                      validate=False)
            from nncf.quantization.advanced_parameters import (
                AdvancedQuantizationParameters,
                AdvancedSmoothQuantParameters,
            )

            alpha = float(job.get("smooth_quant_alpha", 0.95))  # NNCF's TRANSFORMER default when not given
            advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))
            # preset: "performance" (symmetric activations, no zero-point subtraction: the exporter's default)
            # or "mixed" (asymmetric activations: NNCF's TRANSFORMER default); bench/bench_encoder.py times both
            preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
                      "mixed": nncf.QuantizationPreset.MIXED}[job.get("preset") or "mixed"]
            model = nncf.quantize(model, nncf.Dataset(items), preset=preset, model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(items), ignored_scope=scope, advanced_parameters=advanced)
            facts["subset_size"] = len(items)
        else:
            model = nncf.compress_weights(model)
    ov.save_model(model, job["xml"], compress_to_fp16=False)
    return facts


# NNCF imports torch when it is installed (to recognise torch models); the worker handles OpenVINO
# models only, so it keeps torch and its thread pools out of the process altogether.
KEPT_OUT = ("torch", "torchvision", "open3d")


def main(argv: list[str]) -> int:
    for name in KEPT_OUT:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # "import torch" raises ImportError
    warnings.simplefilter("ignore")
    try:
        job = json.loads(argv[1])
        facts = convert_and_compress(job)
    except Exception as err:  # noqa: BLE001 - the parent turns this line into a one-line export error
        first = (str(err).strip().splitlines() or [""])[0]
        print(f"ERROR: {type(err).__name__}: {first}", file=sys.stderr)
        return 2
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
