"""Export a training run to a bundle: one ONNX graph (EncoderGraph) + manifest.

Facts this follows (DESIGN.md section 5): legacy exporter (``dynamo=False``) with an example batch of 2
and a dynamic batch axis, checked afterwards at batch 1 and 3; MultiheadAttention fast path disabled
while tracing; FP16 keeps LayerNorm statistics, softmax and the L2 norms in fp32 with fp32 inputs and
outputs (the same graph is the TensorRT FP16 source); INT8 is ONNX Runtime dynamic quantization for CPUs.
The bundle is assembled in a temporary directory and renamed into place only when complete.
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import (
    INPUT_NAME,
    IR_SECTION,
    ONNX_NAME,
    OUTPUT_NAMES,
    PRECISIONS,
    hash_files,
    staged_directory,
    write_manifest,
)
from align3d_rt.errors import Align3DError
from align3d_rt.scoring import scoring_settings
from align3d_rt.versions import library_versions

EXAMPLE_BATCH = 2
# ONNX opsets the encoder exports at: below 13 torch cannot export aten::unflatten; 23 is the newest the
# exporter knows (measured with torch 2.x: 12 fails, 13..23 export and pass the ONNX Runtime check).
OPSET_RANGE = (13, 23)
CHECK_BATCHES = (1, 3)
# Ops computed in fp32 inside the FP16 graph (casts inserted around them).
FP16_FP32_OPS = ("LayerNormalization", "Softmax", "ReduceL2", "ReduceSumSquare", "ReduceMean", "Pow", "Sqrt")
FP32_CHECK_TOL = 1e-4


def export_onnx(graph: Any, path: str | os.PathLike[str], image_size: int, opset: int = 17,
                example_batch: int = EXAMPLE_BATCH, seed: int = 0) -> None:
    """Trace ``graph`` (an EncoderGraph: uint8 (B,S,S,3) -> maps, probs) to an fp32 ONNX file with dynamic batch."""
    import torch

    if example_batch < 2:
        raise ValueError("export with an example batch >= 2 (a batch of 1 can freeze the batch axis)")
    example = torch.from_numpy(_example_views(example_batch, image_size, seed))
    dyn = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA op is not exportable by the legacy exporter
    try:
        graph.eval()
        with torch.no_grad(), _quiet_warnings():
            torch.onnx.export(
                graph, (example,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=dyn,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def convert_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """FP16 copy of an fp32 graph: fp32 I/O, ``FP16_FP32_OPS`` kept in fp32 (casts around them)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    with _quiet_warnings():
        half = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP16_FP32_OPS))
    # The converter appends its casts at the end of the node list: restore topological order for onnx.checker.
    OnnxModel.graph_topological_sort(half.graph, is_deterministic=True)
    onnx.save(half, str(dst))


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Dynamic INT8 quantization (weights int8 per channel, activations quantized at run time) for CPUs.

    ONNX Runtime's quantization pre-processing runs first. It matters here: the exporter feeds weights
    shared by the CLIP attention and the DPAM V-V path through Identity nodes, and quantize_dynamic
    quantizes only MatMuls whose weight is an initializer. Without it 19 of ViT-L's 127 weight MatMuls
    stayed fp32 (int8 about 2.3x torch fp32 instead of about 2.6x on the 2-core CI CPU).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    large = Path(src).stat().st_size > 1_500_000_000  # protobuf's 2 GB limit: keep weights outside
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=Path(dst).parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        with _quiet_warnings():
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True, save_as_external_data=large)
            quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=large)


def check_onnx(path: str | os.PathLike[str]) -> None:
    """onnx.checker on the file (path form, so large models with external data work)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise Align3DError(f"{path}: exported graph fails onnx.checker ({str(err).splitlines()[0]})") from None


def run_onnx(path: str | os.PathLike[str], views: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray]:
    """Run an exported graph once on the CPU (used for the post-export checks)."""
    from align3d_rt.loaders import OrtSessionLoader

    sess = OrtSessionLoader(Path(path), precision)()
    maps, probs = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: views})
    return np.asarray(maps, np.float32), np.asarray(probs, np.float32)


def _torch_outputs(graph: Any, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():
        maps, probs = graph(torch.from_numpy(views))
    return maps.numpy(), probs.numpy()


def check_dynamic_batch(path: Path, graph: Any, image_size: int, precision: str,
                        batches: tuple[int, ...] = CHECK_BATCHES, seed: int = 1) -> dict[str, Any]:
    """Run the exported graph at each batch size and compare with torch; fp32 must agree to 1e-4."""
    views = _example_views(max(batches), image_size, seed)
    ref_maps, ref_probs = _torch_outputs(graph, views)
    diffs = {}
    for b in batches:
        maps, probs = run_onnx(path, views[:b], precision)
        if maps.shape[0] != b or probs.shape != (b, 2):
            raise Align3DError(f"{path}: batch {b} gave outputs {maps.shape} {probs.shape}; "
                               "the batch axis is not dynamic")
        if not (np.isfinite(maps).all() and np.isfinite(probs).all()):  # NaN/Inf weights (e.g. the CLIP's)
            raise Align3DError(f"{path}: the exported graph gives non-finite outputs (NaN/Inf in its weights); "
                               f"no bundle was written")
        diffs[str(b)] = float(max(np.abs(maps - ref_maps[:b]).max(), np.abs(probs - ref_probs[:b]).max()))
    worst = max(diffs.values())
    if precision == "fp32" and worst > FP32_CHECK_TOL:
        raise Align3DError(f"{path}: fp32 ONNX differs from torch by {worst:.2e} (> {FP32_CHECK_TOL:g})")
    return {"batches": list(batches), "max_abs_diff_vs_torch": diffs, "input": "random uint8 views"}


def check_opset(opset: int) -> None:
    """Refuse (one line) an ONNX opset outside OPSET_RANGE."""
    low, high = OPSET_RANGE
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise Align3DError(f"--opset {opset}: choose an ONNX opset from {low} to {high} (default 17)")


def export_bundle(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], precision: str = "fp32",
                  opset: int = 17, fmt: str = "onnx", calibration_samples: int | None = None,
                  clip_weights: str | os.PathLike[str] | None = None) -> Path:
    """Export a training run to a bundle directory (created or replaced atomically); returns its path.

    ``fmt`` 'onnx' (default): encoder.onnx at ``precision`` (fp32/fp16/int8). ``fmt`` 'openvino': the fp32
    encoder.onnx plus the OpenVINO IR at ``precision`` (fp32/int8/int8-weights, see openvino_export.py)."""
    from align3d_rt.artifacts.run_dir import load_run
    from align3d_rt.export import openvino_export as ovx
    from align3d_rt.model.graph import encoder_graph_from_run

    check_opset(opset)
    if fmt not in ovx.EXPORT_FORMATS:
        raise Align3DError(f"format {fmt!r}: choose one of {', '.join(ovx.EXPORT_FORMATS)}")
    with_ir = fmt != "onnx"
    allowed = ovx.IR_PRECISIONS if with_ir else PRECISIONS
    if precision not in allowed:
        raise Align3DError(f"precision {precision!r} for format {fmt}: choose one of {', '.join(allowed)}")
    if with_ir:
        ovx.import_openvino()  # fail before the export when OpenVINO is missing
        ir_precision, precision = precision, "fp32"  # the ONNX graph beside the IR is the fp32 source
    from align3d_rt.artifacts.run_dir import with_clip_weights

    run = with_clip_weights(load_run(run_dir), clip_weights)  # weights moved: checked by their tensors
    graph = encoder_graph_from_run(run)
    image_size = int(graph.image_size)
    out = Path(out_dir)
    # Scratch files beside the target, not in /tmp: they are renamed into the bundle, and a rename cannot
    # cross file systems (EXDEV).
    with staged_directory(out) as stage, tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".work",
                                                                     dir=stage.parent) as work:
        fp32_path = Path(work) / "encoder_fp32.onnx"
        export_onnx(graph, fp32_path, image_size, opset=opset)
        final = stage / ONNX_NAME
        if precision == "fp32":
            os.replace(fp32_path, final)
        elif precision == "fp16":
            convert_fp16(fp32_path, final)
        else:
            quantize_int8(fp32_path, final)
        check_onnx(final)
        check = check_dynamic_batch(final, graph, image_size, precision)
        manifest = build_manifest(run, run_dir, graph, precision, opset, check)
        files = [ONNX_NAME]
        if with_ir:
            count = ovx.DEFAULT_CALIBRATION_SAMPLES if calibration_samples is None else int(calibration_samples)
            section = ovx.write_ir(stage, final, ir_precision, run, count)
            section["export_check"] = ovx.check_ir(stage / section["xml"], graph, image_size, ir_precision)
            manifest[IR_SECTION] = section
            files += [section["xml"], section["bin"]]
        manifest["files"] = hash_files(stage, files)
        write_manifest(stage, manifest)
    return out


def build_manifest(run: Any, run_dir: str | os.PathLike[str], graph: Any, precision: str, opset: int,
                   check: dict[str, Any]) -> dict[str, Any]:
    """Everything a bundle consumer needs besides the graph (see bundle.py for the layout)."""
    info = graph.info
    image_size = int(graph.image_size)
    grid = int(info.grid_size) if info is not None else image_size // 14
    return {
        "precision": precision,
        "opset": opset,
        "onnx": {
            "file": ONNX_NAME,
            "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["batch", image_size, image_size, 3]},
            "outputs": {
                OUTPUT_NAMES[0]: {"dtype": "float32", "shape": ["batch", 2, grid, grid]},
                OUTPUT_NAMES[1]: {"dtype": "float32", "shape": ["batch", 2]},
            },
            "fp32_ops": list(FP16_FP32_OPS) if precision == "fp16" else [],
            "quantization": ("onnxruntime dynamic int8, per-channel MatMul/Gemm weights"
                             if precision == "int8" else None),
            "export_check": check,
        },
        "image_size": image_size,
        "grid_size": grid,
        "view_preset": run.render_settings.preset,
        "num_views": run.render_settings.num_views,
        "render_settings": run.render_settings.to_dict(),
        "fusion_weight": float(run.fusion_weight),
        "temperature": _temperature(),
        "clip": {
            "name": run.clip_name,
            "weights": run.clip_weights,
            "weights_id": run.clip_weights_id,
            "arch": getattr(info, "arch", None),
            "embed_dim": getattr(info, "embed_dim", None),
            "dpam_start": getattr(info, "dpam_start", None),
        },
        "seeds": run.config.get("seeds", run.config.get("seed")),
        "versions": library_versions(),
        "scoring": scoring_settings(float(run.fusion_weight)),
        "run": {"path": str(Path(run_dir).resolve()), "config": run.config},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "engines": {},
    }


def _temperature() -> float:
    from align3d_rt.model.head import TEMPERATURE

    return float(TEMPERATURE)


def _example_views(batch: int, image_size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(batch, image_size, image_size, 3), dtype=np.uint8)


class _quiet_warnings:
    """Silence the exporters' TracerWarnings / converter chatter (they are expected here)."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
