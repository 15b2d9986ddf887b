"""The TensorRT engine cache inside a bundle: keys, entries, selection for this GPU (torch-free).

Engines are tied to the GPU and the TensorRT version. Each is stored as ``engines/<key>.engine`` +
``engines/<key>.json`` (its entry), keyed by GPU name, TensorRT version and input shape profile,
and indexed in the manifest's ``engines`` section (both files hashed in ``files``). The timing
cache ``trt_timing.cache`` speeds up rebuilds. Entries carry ``index_version``; this module reads,
validates and records them. Building engines is export's job (export/tensorrt_build.py); the
runtime only selects and loads. Probing the machine (its GPU's name, TensorRT) is the runtime's
(``runtime/devices.py``).
"""
from __future__ import annotations

import re
from typing import Any

from align3d_rt.artifacts.bundle import Bundle, add_files
from align3d_rt.errors import BundleError

ENGINES_DIR = "engines"
TIMING_CACHE_NAME = "trt_timing.cache"
INDEX_VERSION = 1
ENTRY_KEYS = ("file", "gpu_name", "tensorrt_version", "min_batch", "max_batch", "onnx_sha256")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def engine_key(gpu_name: str, trt_version: str, image_size: int, min_batch: int, opt_batch: int, max_batch: int) -> str:
    """File-safe key of one engine: GPU, TensorRT version and the input shape profile."""
    return f"{_slug(gpu_name)}__trt{_slug(trt_version)}__s{int(image_size)}__b{min_batch}-{opt_batch}-{max_batch}"


def check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")


def record_engine(bundle: Bundle, key: str, entry: dict[str, Any], rel_files: list[str]) -> Bundle:
    """Index an engine whose files are already written into the bundle (manifest rewritten last)."""
    entry = dict(entry, key=key, index_version=INDEX_VERSION)
    missing = [k for k in ENTRY_KEYS if k not in entry]
    if missing:
        raise ValueError(f"engine entry lacks {', '.join(missing)}")
    return add_files(bundle, rel_files, section="engines", entry_key=key, entry=entry)


def select_engine(bundle: Bundle, gpu_name: str, trt_version: str, batch: int | None = None,
                  key: str | None = None) -> tuple[str, dict[str, Any]]:
    """The bundle's engine for this GPU and TensorRT version (covering ``batch`` when given; only ``key`` if given).

    Raises BundleError telling to rebuild when engines exist only for other GPUs / TensorRT versions, or
    when the matching engine was built from another ONNX graph than the bundle's current one.
    """
    engines = bundle.engines
    if key is not None:
        if key not in engines:
            raise BundleError(f"{bundle.path}: no TensorRT engine {key!r} in the bundle (have: "
                              f"{', '.join(engines) or 'none'})")
        engines = {key: engines[key]}
    if not engines:
        raise BundleError(f"{bundle.path}: no TensorRT engine in the bundle; build one with "
                          f"`align3d-rt export --tensorrt` or export.tensorrt_build.build_engine")
    newer = [k for k, e in engines.items() if int(e.get("index_version", 1)) > INDEX_VERSION]
    if newer:
        raise BundleError(f"{bundle.path}: engine entries {', '.join(newer)} come from a newer align3d_rt; upgrade it")
    same_host = {k: e for k, e in engines.items()
                 if e.get("gpu_name") == gpu_name and str(e.get("tensorrt_version")) == str(trt_version)}
    if not same_host:
        built = "; ".join(sorted(f"{e.get('gpu_name')} / TensorRT {e.get('tensorrt_version')}"
                                 for e in engines.values()))
        raise BundleError(f"{bundle.path}: TensorRT engines were built for {built}, this machine has {gpu_name} / "
                          f"TensorRT {trt_version}; engines do not transfer across GPUs or TensorRT versions: rebuild "
                          f"with `align3d-rt export --tensorrt` (or build_engine)")
    fitting = {k: e for k, e in same_host.items()
               if batch is None or int(e["min_batch"]) <= batch <= int(e["max_batch"])}
    pool = fitting or same_host  # larger batches are split into chunks of max_batch by the backend
    key = max(pool, key=lambda k: (int(pool[k]["max_batch"]), k))
    entry = pool[key]
    if not (bundle.path / entry.get("file", "")).is_file():
        raise BundleError(f"{bundle.path / entry.get('file', '?')}: engine file missing; rebuild it")
    if entry.get("onnx_sha256") != bundle.onnx_sha256:
        raise BundleError(f"{bundle.path}: engine {key} was built from another encoder.onnx; rebuild it")
    return key, entry
