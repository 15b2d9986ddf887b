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
import re
from pathlib import Path
from typing import Any

from align3d_rt.errors import BackendUnavailable, BundleError, import_backend
from align3d_rt.export.bundle import ENGINES_DIR, INPUT_NAME, TIMING_CACHE_NAME, Bundle, add_files, load_bundle
from align3d_rt.io_utils import write_bytes_atomic, write_json_atomic

TRT_HINT = ("pip install tensorrt on a machine with an NVIDIA GPU and driver; "
            "its wheels come from NVIDIA's package index")


def import_tensorrt() -> Any:
    """``import tensorrt`` or BackendUnavailable with an install hint."""
    return import_backend("tensorrt", "TensorRT", TRT_HINT)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def engine_key(gpu_name: str, trt_version: str, image_size: int, min_batch: int, opt_batch: int, max_batch: int) -> str:
    """File-safe key of one engine: GPU, TensorRT version and the input shape profile."""
    return f"{_slug(gpu_name)}__trt{_slug(trt_version)}__s{int(image_size)}__b{min_batch}-{opt_batch}-{max_batch}"


def check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")


def select_engine(bundle: Bundle, gpu_name: str, trt_version: str, batch: int | None = None,
                  key: str | None = None) -> tuple[str, dict[str, Any]]:
    """The bundle's engine for this GPU and TensorRT version (covering ``batch`` when given; only ``key`` if given).

    Raises BundleError telling to rebuild when engines exist only for other GPUs / TensorRT versions, or
    when the matching engine was built from another ONNX graph than the bundle's current one.
    """
    engines = bundle.engines
    if key is not None:
        if key not in engines:
            raise BundleError(f"{bundle.path}: no TensorRT engine {key!r} in the bundle (have: {', '.join(engines) or 'none'})")
        engines = {key: engines[key]}
    if not engines:
        raise BundleError(f"{bundle.path}: no TensorRT engine in the bundle; build one with "
                          f"`align3d-rt export --tensorrt` or export.tensorrt_build.build_engine")
    onnx_sha = bundle.manifest["files"].get(bundle.onnx_path.relative_to(bundle.path).as_posix())
    same_host = {k: e for k, e in engines.items()
                 if e.get("gpu_name") == gpu_name and str(e.get("tensorrt_version")) == str(trt_version)}
    if not same_host:
        built = "; ".join(sorted(f"{e.get('gpu_name')} / TensorRT {e.get('tensorrt_version')}" for e in engines.values()))
        raise BundleError(f"{bundle.path}: TensorRT engines were built for {built}, this machine has {gpu_name} / "
                          f"TensorRT {trt_version}; engines do not transfer across GPUs or TensorRT versions: rebuild "
                          f"with `align3d-rt export --tensorrt` (or build_engine)")
    fitting = {k: e for k, e in same_host.items() if batch is None or int(e["min_batch"]) <= batch <= int(e["max_batch"])}
    pool = fitting or same_host  # larger batches are split into chunks of max_batch by the backend
    key = max(pool, key=lambda k: (int(pool[k]["max_batch"]), k))
    entry = pool[key]
    if not (bundle.path / entry.get("file", "")).is_file():
        raise BundleError(f"{bundle.path / entry.get('file', '?')}: engine file missing; rebuild it")
    if entry.get("onnx_sha256") != onnx_sha:
        raise BundleError(f"{bundle.path}: engine {key} was built from another encoder.onnx; rebuild it")
    return key, entry


def gpu_name(device: int = 0) -> str:
    """Name of the CUDA device (via torch, else pycuda); BackendUnavailable when there is none."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device))
        raise BackendUnavailable("no CUDA GPU is visible to torch (TensorRT needs an NVIDIA GPU)")
    except ImportError:
        pass
    try:
        import pycuda.driver as cuda

        cuda.init()
        return str(cuda.Device(device).name())
    except Exception as err:  # noqa: BLE001 - pycuda missing or no driver
        raise BackendUnavailable(f"no CUDA GPU found (torch missing; pycuda: {err})") from None


def _network_flags(trt: Any) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BackendUnavailable(f"TensorRT {trt.__version__} lacks strongly typed networks; use TensorRT 10.12 or newer")
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
    onnx_rel = bundle.onnx_path.relative_to(bundle.path).as_posix()
    onnx_sha = bundle.manifest["files"][onnx_rel]
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
    add_files(bundle, [rel_engine, rel_meta, TIMING_CACHE_NAME], section="engines", entry_key=key, entry=meta)
    return bundle.path / rel_engine
