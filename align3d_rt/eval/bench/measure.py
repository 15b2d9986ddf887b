"""Measure one benchmark row: a Detector over one backend configuration, clouds from disk to written scores.

Loading with preprocessing does not depend on the backend: ``measure_loads`` times it once per file
before the rows (uncached: read + preprocess; cached: read from the preprocessing cache it fills).
Then per row and kind of cloud, after a warm-up (one cloud end to end, then one render of each other kind):
  serial pass (batch 1)  each cloud: cached load, Detector.score (render, encode, back-project + object
                         score), blur + write, each timed; latency cached = their sum; latency
                         uncached = the same with that file's uncached load in place of the cached one
  stream passes          Detector.score_stream over the files at each batch size (three threads,
                         bounded queues), cached loads, outputs written by the caller: samples/s
Memory: peak host RSS (and GPU peaks where there is a GPU) over the whole measurement and per pass.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.eval.bench.inputs import CloudSet
from align3d_rt.eval.bench.memory import PeakMemory

STAGES = ("load_uncached", "load_cached", "render", "encode", "backproject", "write")


@dataclass
class MeasureSettings:
    """How much to measure. ``batch_sizes``: the stream passes (batch 1 is always measured)."""

    batch_sizes: tuple[int, ...] = (1, 2, 4)
    warmup_each_batch: bool = True  # one untimed stream at each batch size > 1 first (engine/graph shapes)
    stream_depth: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


def write_result(out_dir: Path, key: str, result: Any) -> None:
    """What a user keeps per cloud: KEY.scores.npy, KEY.points.npy and, for organized scans, the
    blurred anomaly map on the grid (KEY.map.npy, the reference's sigma-4 Gaussian)."""
    from align3d_rt import scoring
    from align3d_rt.io_utils import save_npy_atomic

    sample = result.sample
    save_npy_atomic(out_dir / f"{key}.scores.npy", np.asarray(result.point_scores, dtype=np.float32))
    save_npy_atomic(out_dir / f"{key}.points.npy", np.asarray(sample.points, dtype=np.float32))
    if sample.grid_index is not None and sample.grid_shape is not None:
        grid = scoring.points_to_grid(result.fused, sample.grid_index, tuple(sample.grid_shape))
        save_npy_atomic(out_dir / f"{key}.map.npy", np.asarray(scoring.blur_grid(grid), dtype=np.float32))


def summary(values: list[float]) -> dict[str, Any]:
    """Median, p95 (nearest rank), min, max and the values themselves."""
    ordered = sorted(values)
    rank = max(0, int(np.ceil(0.95 * len(ordered))) - 1)
    return {"median": statistics.median(ordered), "p95": ordered[rank], "min": ordered[0], "max": ordered[-1],
            "n": len(ordered), "values": values}


def _check(result: Any, item: tuple[Path, str]) -> None:
    from align3d_rt.errors import Align3DError

    if not (np.isfinite(result.point_scores).all() and np.isfinite(result.object_score)):
        raise Align3DError(f"{item[0]}: non-finite scores")


def measure_loads(sets: list[CloudSet]) -> dict[str, dict[str, dict[str, float]]]:
    """{kind: {key: {'uncached': s, 'cached': s}}}: each file loaded with preprocessing (no cache), then
    once to fill the cache, then from the cache. Backend-independent, so measured once per benchmark."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for clouds in sets:
        uncached, cached = clouds.loader(use_cache=False), clouds.loader(use_cache=True)
        out[clouds.kind] = {}
        for item in clouds.files:
            t0 = time.perf_counter()
            uncached(item)
            t_uncached = time.perf_counter() - t0
            cached(item)  # fills the cache entry (tiff scans)
            t0 = time.perf_counter()
            cached(item)
            out[clouds.kind][item[1]] = {"uncached": t_uncached, "cached": time.perf_counter() - t0}
    return out


def serial_pass(detector: Any, clouds: CloudSet, out_dir: Path, uncached_s: dict[str, float]) -> dict[str, Any]:
    """Batch 1, one cloud after the other; per-cloud stage times and latencies (``uncached_s``: key ->
    seconds of that file's uncached load, from ``measure_loads``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cached = clouds.loader(use_cache=True)
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    lat_uncached, lat_cached, points = [], [], []
    for item in clouds.files:
        t0 = time.perf_counter()
        sample = cached(item)
        t_cached = time.perf_counter() - t0
        t_uncached = uncached_s[item[1]]
        t0 = time.perf_counter()
        result = detector.score([sample], keep_render=False)[0]
        t_score = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_result(out_dir, item[1], result)
        t_write = time.perf_counter() - t0
        _check(result, item)
        for key, value in (("load_uncached", t_uncached), ("load_cached", t_cached),
                           ("render", result.timings["render"]), ("encode", result.timings["encode"]),
                           ("backproject", result.timings["backproject"]), ("write", t_write)):
            stages[key].append(value)
        lat_uncached.append(t_uncached + t_score + t_write)
        lat_cached.append(t_cached + t_score + t_write)
        points.append(sample.num_points)
    return {"latency_uncached_s": summary(lat_uncached), "latency_cached_s": summary(lat_cached),
            "stages_s": {k: statistics.median(v) for k, v in stages.items()},
            "stages_all_s": stages, "points_mean": float(np.mean(points)), "samples": len(points)}


def stream_pass(detector: Any, clouds: CloudSet, out_dir: Path, batch_size: int, depth: int = 2) -> dict[str, Any]:
    """Detector.score_stream over every file (cached loads), outputs written here: wall time and samples/s."""
    from align3d_rt.errors import InputError

    out_dir.mkdir(parents=True, exist_ok=True)
    load = clouds.loader(use_cache=True)
    scored, failed = 0, {}
    t0 = time.perf_counter()
    for item, result in detector.score_stream(clouds.files, load=load, batch_size=batch_size, keep_render=False,
                                              depth=depth):
        if isinstance(result, InputError):
            failed[str(item[0])] = str(result)
            continue
        write_result(out_dir, item[1], result)
        _check(result, item)
        scored += 1
    wall = time.perf_counter() - t0
    if failed:
        from align3d_rt.errors import Align3DError

        raise Align3DError(f"{len(failed)} cloud(s) failed in the stream: {next(iter(failed.values()))}")
    return {"batch_size": batch_size, "wall_s": wall, "samples": scored, "fps": scored / wall}


def warm_up(detector: Any, sets: list[CloudSet], out_dir: Path) -> float:
    """One cloud of the first kind end to end (kernels, encoder session/graph and its first call, writing),
    then one render of each other kind (same encoder and kernels, other render settings)."""
    t0 = time.perf_counter()
    first = sets[0]
    sample = first.loader(use_cache=True)(first.files[0])
    result = detector.score([sample], keep_render=False)[0]
    write_result(out_dir, "warmup", result)
    for other in sets[1:]:
        detector.render(other.loader(use_cache=True)(other.files[0]))
    return time.perf_counter() - t0


def measure_detector(detector: Any, sets: list[CloudSet], settings: MeasureSettings, out_dir: Path,
                     loads: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Every figure of one row (the detector is activated here and closed at the end)."""
    out: dict[str, Any] = {"by_kind": {}}
    with PeakMemory() as total:
        t0 = time.perf_counter()
        with detector:
            detector.runner  # noqa: B018 - create and activate the runner (session/engine/graph load)
            out["setup_s"] = time.perf_counter() - t0
            out["warmup_s"] = warm_up(detector, sets, out_dir / "warmup")
            out["detector"] = detector.describe()
            for clouds in sets:
                uncached = {key: t["uncached"] for key, t in loads[clouds.kind].items()}
                out["by_kind"][clouds.kind] = measure_kind(detector, clouds, settings, out_dir / clouds.kind, uncached)
    out["memory"] = total.result()
    return out


def measure_kind(detector: Any, clouds: CloudSet, settings: MeasureSettings, out_dir: Path,
                 uncached_s: dict[str, float]) -> dict[str, Any]:
    with PeakMemory() as mem:
        res = serial_pass(detector, clouds, out_dir / "serial", uncached_s)
    res["memory_serial"] = mem.result()
    n = len(clouds.files)
    sizes = sorted({1, *(b for b in settings.batch_sizes if 1 <= b <= n)})
    streams, memory_by_batch = {}, {}
    for b in sizes:
        if b > 1 and settings.warmup_each_batch:
            stream_pass(detector, clouds, out_dir / f"warm_b{b}", b, settings.stream_depth)
        with PeakMemory() as mem:
            streams[str(b)] = stream_pass(detector, clouds, out_dir / f"stream_b{b}", b, settings.stream_depth)
        memory_by_batch[str(b)] = mem.result()
    best = max(streams.values(), key=lambda s: s["fps"])
    enc = res["stages_s"]["encode"]
    res.update({
        "stream": streams, "memory_by_batch": memory_by_batch,
        "fps_batch1": streams["1"]["fps"], "best_batch": best["batch_size"], "fps_best": best["fps"],
        "encoder_alone_fps": 1.0 / enc if enc > 0 else float("inf"),
        "end_to_end_over_encoder_fps": best["fps"] * enc,
        "origin": clouds.origin, "files": len(clouds.files),
    })
    return res
