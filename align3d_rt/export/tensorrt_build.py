"""Build and cache TensorRT engines inside a bundle (TensorRT is optional and imported lazily).

TensorRT 11 builds every network strongly typed (10.12+ with the STRONGLY_TYPED flag): precision comes
from the ONNX graph, so engines are built from the FP16 bundle, whose graph keeps LayerNorm/softmax in
fp32. Engines are tied to the GPU and TensorRT version; they are stored as
``engines/<key>.engine`` + ``engines/<key>.json`` keyed by GPU name, TensorRT version and input shapes,
and listed (with their sha256) in the manifest. The timing cache is kept in the bundle to speed up rebuilds.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from align3d_rt.artifacts.bundle import INPUT_NAME, Bundle, load_bundle
from align3d_rt.artifacts.engine_index import (
    ENGINES_DIR,
    INDEX_VERSION,
    TIMING_CACHE_NAME,
    check_profile,
    engine_key,
    record_engine,
)
from align3d_rt.errors import BackendUnavailable, BundleError
from align3d_rt.io_utils import write_bytes_atomic, write_json_atomic
from align3d_rt.runtime.devices import gpu_name, import_tensorrt

__all__ = ["build_engine", "check_profile", "engine_key", "import_tensorrt"]


def _network_flags(trt: Any) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BackendUnavailable(f"TensorRT {trt.__version__} lacks strongly typed networks; "
                                 "use TensorRT 10.12 or newer")
    return 1 << int(flag)


def build_engine(bundle: Bundle | str | os.PathLike[str], min_batch: int = 1, opt_batch: int = 9, max_batch: int = 18,
                 workspace_gb: float = 4.0, device: int = 0, force: bool = False) -> Path:
    """Build (or reuse) a TensorRT engine for the bundle's FP16 graph on this GPU; returns the engine path."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    check_profile(min_batch, opt_batch, max_batch)
    if bundle.precision != "fp16":
        raise BundleError(f"{bundle.path}: TensorRT engines are built from an fp16 bundle (TensorRT 11 builds strongly "
                          f"typed networks: precision comes from the ONNX graph); this bundle is {bundle.precision}: "
                          f"export one with `align3d-rt export --precision fp16`")
    trt = import_tensorrt()
    name = gpu_name(device)
    key = engine_key(name, trt.__version__, bundle.image_size, min_batch, opt_batch, max_batch)
    rel_engine, rel_meta = f"{ENGINES_DIR}/{key}.engine", f"{ENGINES_DIR}/{key}.json"
    onnx_sha = bundle.onnx_sha256
    existing = bundle.engines.get(key)
    if existing and not force and existing.get("onnx_sha256") == onnx_sha and (bundle.path / rel_engine).is_file():
        return bundle.path / rel_engine

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle.onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{bundle.onnx_path}: TensorRT cannot parse the graph ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    s = bundle.image_size
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (min_batch, s, s, 3), (opt_batch, s, s, 3), (max_batch, s, s, 3))
    config.add_optimization_profile(profile)
    cache_path = bundle.path / TIMING_CACHE_NAME
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"{bundle.onnx_path}: TensorRT engine build failed (see the TensorRT log above)")

    meta = {
        "key": key,
        "index_version": INDEX_VERSION,
        "file": rel_engine,
        "gpu_name": name,
        "tensorrt_version": trt.__version__,
        "image_size": s,
        "min_batch": min_batch,
        "opt_batch": opt_batch,
        "max_batch": max_batch,
        "input": INPUT_NAME,
        "onnx_sha256": onnx_sha,
        "strongly_typed": True,
        "workspace_gb": workspace_gb,
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_bytes_atomic(bundle.path / rel_engine, bytes(serialized))
    write_json_atomic(bundle.path / rel_meta, meta)
    write_bytes_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    record_engine(bundle, key, meta, [rel_engine, rel_meta, TIMING_CACHE_NAME])
    return bundle.path / rel_engine
