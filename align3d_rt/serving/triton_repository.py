"""``align3d-rt export --format triton``: a bundle -> a Triton Inference Server model repository.

Two models (layout: ``align3d_rt.artifacts.triton_layout``): the encoder, served by Triton's own
backend for the bundle's engine or by the Python backend (``--triton-encoder python``), and the
pipeline, a Python-backend model that renders, calls the encoder by BLS, back-projects, fuses and
scores with the runtime's Detector (``align3d_rt.serving.triton_pipeline``). The bundle is copied
into the pipeline's version folder and hash-checked when the model loads, so the repository is
self-contained. Written in a temporary folder beside ``out`` and renamed into place when complete;
an existing ``out`` is replaced only when it is a repository this tool wrote and ``overwrite`` is set.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from align3d_rt.artifacts import triton_layout as layout
from align3d_rt.artifacts.bundle import Bundle, load_bundle, manifest_digest
from align3d_rt.errors import BundleError
from align3d_rt.io_utils import read_json, staged_folder, write_json_atomic, write_text_atomic
from align3d_rt.serving.triton_config import (
    ENCODER_SERVING,
    ONNX,
    OPENVINO,
    PYTHON,
    TENSORRT,
    EncoderServing,
    encoder_config,
    pipeline_config,
    to_pbtxt,
)

AUTO = "auto"
ENCODER_CHOICES = (AUTO, *ENCODER_SERVING)

_MODEL_PY = '''"""Triton Python-backend model written by `align3d-rt export --format triton`: {what}.

The work is done by {module}; the server's Python needs align3d_rt installed (repository README)."""
import triton_python_backend_utils as pb_utils

from {module} import {cls}


class TritonPythonModel:
    def initialize(self, args):
        self.model = {cls}(args, pb_utils)

    def execute(self, requests):
        return self.model.execute(requests)

    def finalize(self):
        getattr(self.model, "close", lambda: None)()
'''


def is_repository(path: Path) -> bool:
    """True when ``path`` holds the marker of a repository this tool wrote."""
    try:
        marker = read_json(Path(path) / layout.MARKER_NAME)
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == layout.MARKER_FORMAT


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse (one line) an ``out`` that is a file, a folder we did not write, or a repository without overwrite."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BundleError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not is_repository(out):
            raise BundleError(f"{out}: exists and is not a Triton repository align3d-rt wrote "
                              f"({layout.MARKER_NAME} missing); it is never replaced: choose a new or empty --out")
        if not overwrite:
            raise BundleError(f"{out}: already holds a Triton repository; pass --overwrite to replace it")
        foreign = foreign_in_repository(out)
        if foreign:
            raise BundleError(f"{out}: the repository also holds {len(foreign)} "
                              f"entr{'y' if len(foreign) == 1 else 'ies'} "
                              f"align3d-rt did not write (e.g. {foreign[0]}); they are never deleted: move them, or "
                              f"choose another --out")


def repository_files(path: Path) -> set[str]:
    """The files the repository's marker lists as written by this tool (older markers: its two model folders)."""
    try:
        marker = read_json(Path(path) / layout.MARKER_NAME)
    except (OSError, ValueError):
        return set()
    files = marker.get("files") if isinstance(marker, dict) else None
    if isinstance(files, list):
        return {layout.MARKER_NAME, *(f for f in files if isinstance(f, str))}
    owned = {layout.MARKER_NAME, "README.md"}
    for key in ("pipeline_model", "encoder_model"):
        model = marker.get(key) if isinstance(marker, dict) else None
        if isinstance(model, str) and model and "/" not in model and (Path(path) / model).is_dir():
            owned |= {f"{model}/{p.relative_to(Path(path) / model).as_posix()}"
                      for p in (Path(path) / model).rglob("*") if p.is_file() and not p.is_symlink()}
    return owned


def foreign_in_repository(path: Path) -> list[str]:
    """Entries of the repository folder ``path`` this tool did not write (the user's; never deleted)."""
    from align3d_rt.io_utils import foreign_entries

    return foreign_entries(path, repository_files(path))


def choose_encoder(bundle: Bundle, wanted: str) -> str:
    """The encoder kind: ``wanted``, or for 'auto' the bundle's engine (OpenVINO IR, else TensorRT engine,
    else ONNX)."""
    if wanted == AUTO:
        return OPENVINO if bundle.ir else TENSORRT if bundle.engines else ONNX
    if wanted == OPENVINO and not bundle.ir:
        raise BundleError(f"{bundle.path}: no OpenVINO IR in this bundle (export it with --format openvino)")
    if wanted == TENSORRT and not bundle.engines:
        raise BundleError(f"{bundle.path}: no TensorRT engine in this bundle (export it with --tensorrt)")
    return wanted


def _engine(bundle: Bundle, key: str | None) -> tuple[str, dict[str, Any]]:
    engines = bundle.engines
    if key is None and len(engines) == 1:
        key = next(iter(engines))
    if key not in engines:
        raise BundleError(f"{bundle.path}: choose the engine with --triton-engine-key (one of: "
                          f"{', '.join(sorted(engines))})")
    if engines[key].get("onnx_sha256") != bundle.onnx_sha256:
        raise BundleError(f"{bundle.path}: engine {key} was built from another encoder.onnx; rebuild it")
    return key, engines[key]


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` when both lie on one file system (no second copy of a large graph), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_triton_repository(bundle_dir: Path, out: Path, *, encoder: str = AUTO, name: str = layout.DEFAULT_MODEL,
                            max_batch: int = 18, opt_batch: int = 9, max_queue_delay_us: int = 2000,
                            encoder_instances: int = 1, pipeline_instances: int = 2, gpu: bool = False,
                            threads: int = 0, engine_key: str | None = None, overwrite: bool = False,
                            calibration: Path | None = None) -> Path:
    """Write the repository for ``bundle_dir`` at ``out``; returns ``out``. ``calibration``: a §13
    calibration file of this bundle, copied beside the pipeline (refused when it is for another bundle)."""
    out = Path(out)
    check_target(out, overwrite)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise BundleError(f"--triton-name {name!r}: use letters, digits, '_', '.', '-' (it names folders)")
    if max_queue_delay_us < 0:
        raise BundleError(f"--triton-queue-delay-us {max_queue_delay_us}: must be >= 0")
    bundle = load_bundle(bundle_dir)  # hash-checked
    if calibration is not None:
        from align3d_rt.artifacts.calibration import bundle_source, check_source, load_calibration

        check_source(load_calibration(calibration), bundle_source(bundle.manifest), calibration)
    kind = choose_encoder(bundle, encoder)
    if kind == TENSORRT:  # the engine's optimisation profile fixes the batch range
        engine_key, entry = _engine(bundle, engine_key)
        opt_batch, max_batch = int(entry.get("opt_batch", entry["max_batch"])), int(entry["max_batch"])
        gpu = True
    if not 1 <= opt_batch <= max_batch:
        raise BundleError(f"--opt-batch {opt_batch} / --max-batch {max_batch}: need 1 <= opt <= max")
    for flag, value in (("--triton-instances", encoder_instances), ("--triton-pipeline-instances", pipeline_instances)):
        if value < 1:
            raise BundleError(f"{flag} {value}: need at least 1")
    serving = EncoderServing(kind, max_batch, tuple(sorted({opt_batch, max_batch})), max_queue_delay_us,
                             encoder_instances, gpu)
    with staged_repository(out) as stage:
        _write(stage, bundle, serving, name, pipeline_instances, threads, engine_key, calibration)
    return out


def own_repository(path: Path) -> bool:
    """A repository folder this tool wrote, holding only its own files (an export may replace it)."""
    return is_repository(path) and not foreign_in_repository(path)


def staged_repository(out: Path) -> contextlib.AbstractContextManager[Path]:
    """An empty folder beside ``out`` that replaces it when the repository in it is complete
    (``io_utils.staged_folder``: a repository another run wrote meanwhile is never replaced)."""
    return staged_folder(out, marker=layout.MARKER_NAME, ours=own_repository,
                         what="a Triton repository align3d-rt wrote", error=BundleError)


def _write(root: Path, bundle: Bundle, serving: EncoderServing, name: str, pipeline_instances: int, threads: int,
           engine_key: str | None, calibration: Path | None = None) -> None:
    enc_name = layout.encoder_name(name)
    pipe_dir, enc_dir = root / name / layout.VERSION, root / enc_name / layout.VERSION
    shutil.copytree(bundle.path, pipe_dir / layout.BUNDLE_DIR)
    copy = load_bundle(pipe_dir / layout.BUNDLE_DIR)  # the copy is hash-checked like the original
    _write_model_py(pipe_dir, "the align3d_rt pipeline (render, encoder by BLS, back-project, fuse, score)",
                    "align3d_rt.serving.triton_pipeline", "PipelineModel")
    sources = _encoder_sources(copy, serving.kind, engine_key)
    for target, src in sources.items():
        _place(src, enc_dir / target)
    if serving.kind == PYTHON:
        _write_model_py(enc_dir, "the encoder, ONNX Runtime on model.onnx", "align3d_rt.serving.triton_encoder",
                        "EncoderModel")
    digest = manifest_digest(copy.manifest)
    enc_params = {"bundle_manifest_sha256": digest, "precision": copy.precision,
                  "onnx_sha256": copy.onnx_sha256 or "", "onnx_file": "model.onnx", "threads": threads}
    if serving.kind == OPENVINO:
        enc_params.update(openvino_parameters(serving.instances, threads))
    write_text_atomic(root / enc_name / "config.pbtxt", to_pbtxt(
        encoder_config(enc_name, serving, copy.image_size, copy.grid_size, enc_params)))
    pipe_params = {"bundle_dir": layout.BUNDLE_DIR, "encoder_model": enc_name, "encoder_kind": serving.kind,
                   "encoder_max_batch": serving.max_batch, "bundle_manifest_sha256": digest,
                   "fusion_weight": copy.fusion_weight, "precision": copy.precision, "image_size": copy.image_size,
                   "grid_size": copy.grid_size, "views": len(copy.render_settings.views), "clip_name": copy.clip_name}
    if calibration is not None:
        from align3d_rt.artifacts.calibration import load_calibration

        shutil.copy2(calibration, pipe_dir / layout.CALIBRATION_FILE)
        cal = load_calibration(pipe_dir / layout.CALIBRATION_FILE)
        pipe_params.update({"calibration_file": layout.CALIBRATION_FILE, "calibration_sha256": cal.sha256,
                            "calibration_product": cal.product,
                            "calibration_rule": json.dumps(cal.rule, sort_keys=True),
                            "object_threshold": repr(float(cal.object.threshold)),
                            "point_threshold": repr(float(cal.point.threshold))})
    write_text_atomic(root / name / "config.pbtxt", to_pbtxt(
        pipeline_config(name, pipeline_instances, copy.image_size, copy.grid_size, pipe_params,
                        calibrated=calibration is not None)))
    write_text_atomic(root / "README.md", readme_text(name, enc_name, serving))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    write_json_atomic(root / layout.MARKER_NAME, {
        "files": files, "format": layout.MARKER_FORMAT, "format_version": layout.MARKER_VERSION, "pipeline_model": name,
        "encoder_model": enc_name, "encoder_kind": serving.kind, "bundle_manifest_sha256": digest,
        "bundle_source": str(bundle.path.resolve()), "max_batch_size": serving.max_batch})


def openvino_parameters(instances: int, threads: int) -> dict[str, str]:
    """Triton's OpenVINO backend settings for the encoder (the keys it reads: PERFORMANCE_HINT, NUM_STREAMS,
    INFERENCE_NUM_THREADS). Each model instance runs one infer request at a time, and an OpenVINO request
    runs on one stream: one instance gets LATENCY (its request uses every core; Triton's dynamic batcher
    still puts the views of several waiting clouds into one call), N instances get THROUGHPUT with N
    streams, so N requests run at once, one per stream. The compute precision is the CPU plugin's default
    (bf16 where the CPU has AMX/AVX512-BF16, else f32), as the ``auto`` hint of our own runners."""
    params = {"PERFORMANCE_HINT": "THROUGHPUT" if instances > 1 else "LATENCY",
              "NUM_STREAMS": str(instances)}
    if threads > 0:
        params["INFERENCE_NUM_THREADS"] = str(threads)
    return params


def _encoder_sources(copy: Bundle, kind: str, engine_key: str | None) -> dict[str, Path]:
    """Model file name in the encoder's version folder -> the bundle file it is (hash-listed in the bundle)."""
    if kind == OPENVINO:
        ir = copy.ir or {}
        return {"model.xml": copy.path / str(ir["xml"]), "model.bin": copy.path / str(ir["bin"])}
    if kind == TENSORRT:
        key, entry = _engine(copy, engine_key)
        return {"model.plan": copy.path / str(entry["file"])}
    return {"model.onnx": copy.onnx_path}


def _write_model_py(version_dir: Path, what: str, module: str, cls: str) -> None:
    write_text_atomic(version_dir / "model.py", _MODEL_PY.format(what=what, module=module, cls=cls))


def readme_text(name: str, enc_name: str, serving: EncoderServing) -> str:
    """The repository's README: what is in it and how to serve and query it."""
    field, value, files = ENCODER_SERVING[serving.kind]
    python_only = serving.kind == PYTHON
    return f"""# Triton model repository (align3d-rt export --format triton)

Models:
- `{name}`: Python backend. A point cloud in (`points` (N,3) float32, optional `dataset`, `category`),
  per-point scores (`point_scores` (N,3): render, aligned, fused) and `object_score` out. It renders the
  views, calls `{enc_name}` through BLS, back-projects, fuses and scores with align3d_rt's Detector,
  the code local inference runs. The bundle is in `{name}/1/bundle/` (hash-checked when the model loads).
- `{enc_name}`: the encoder, {field} `{value}` ({', '.join(files)}), views uint8 (B,S,S,3) ->
  patch_maps (B,2,G,G), global_probs (B,2); max_batch_size {serving.max_batch}, dynamic batching
  (preferred {list(serving.preferred_batches)}, queue delay {serving.max_queue_delay_us} us),
  {serving.instances} instance(s) on the {'GPU' if serving.gpu else 'CPU'}.

## Serve

The Python-backend models import align3d_rt: install it into the Python the server's Python
backend runs (inside the NGC container: `pip install 'align3d_rt[inspect]'` from the project, which brings numpy,
numba and onnxruntime). Then, from this folder:

    tritonserver --model-repository . --backend-config=python,stub-timeout-seconds=300

(the pipeline compiles its numba kernels while it loads; set NUMBA_CACHE_DIR to keep them between starts).
{'This encoder needs only the Python backend, so the tritonserver bundled with nvidia-pytriton '
 'serves it too.' if python_only else
 'The encoder needs the server build with the ' + value + ' backend (the NGC tritonserver container has it); '
 'for a server with only the Python backend, export with --triton-encoder python.'}

## Query

    align3d-rt infer --triton http://HOST:8000 --model {name} --out OUT FILES...
    align3d-rt infer --triton grpc://HOST:8001 --model {name} --out OUT FILES...
"""
