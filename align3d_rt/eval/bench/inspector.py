"""The C++ inspector row: ``align3d-inspect BUNDLE CLOUD... --out DIR`` timed from outside, like a user runs it.

The binary comes from ALIGN3D_INSPECT or build/cpp (CMake). It writes per cloud KEY scores .npy and a
JSON with the object score and its own timings. Measured here:
  latency   one process per cloud (start, model load, score, write: what one call costs), median/p95
  fps_per_process  one process over every cloud: clouds / wall seconds (start-up included: process start,
            hashing every bundle file, compiling (from OpenVINO's cache) and the first call)
  fps_warm  one process over every cloud twice: clouds / (its wall - the fps process's wall), i.e. the
            rate once started (what a program embedding the Inspector gets). This is the row's FPS, as
            for the Python rows, whose detector is set up and warmed before timing; when noise makes it
            unmeasurable (the second pass not slower) the row falls back to fps_per_process and says so
  startup   one process per cloud, split (median over the clouds): outside main (process start, shared
            libraries, exit, writing outputs: the wall clock less what the inspector timed), the inspector's own
            ``startup_s`` parts (bundle files hashed first, encoder compile / cache import, wait for the files
            hashed in the background), the first cloud's extra cost (its time less the warm per-cloud
            time) and the warm per-cloud time (its own scores.json timings)
  stages    its own stage times (read, render, encode, back-project + score) from the scores.json of the
            twice process, without its first cloud (warm, as the Python rows' serial pass)
  memory    the process's peak RSS (psutil, sampled every 5 ms)
The bundle it reads is the one the Python OpenVINO row of the same precision uses (FORMAT, same export
options; default int8: the IR the inspector compiles, at its default compute precision). It does not
preprocess organized scans (no RANSAC plane + DBSCAN), so it gets their preprocessed points as .npy: its
mvtec latency leaves the preprocessing out (the Python rows' uncached latency has it).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from align3d_rt.eval.bench.inputs import CloudSet
from align3d_rt.eval.bench.measure import summary
from align3d_rt.vocabulary import ExportFormat

ENV_VAR = "ALIGN3D_INSPECT"
BINARY_NAME = "align3d-inspect"
FORMAT = str(ExportFormat.OPENVINO)  # the export format, and the registry backend whose bench variants it follows
CALL_TIMEOUT_S = 600


def find_inspector(repo: Path | None = None) -> Path | None:
    """The built binary: $ALIGN3D_INSPECT, else build/cpp/align3d-inspect (or one level below) in the repo."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    root = repo or Path(__file__).resolve().parents[3]
    for cand in [root / "build" / "cpp" / BINARY_NAME, *sorted((root / "build" / "cpp").glob(f"*/{BINARY_NAME}"))]:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stderr tail) of one process; a failure raises RuntimeError with its last line."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                break
            if time.perf_counter() - t0 > CALL_TIMEOUT_S:
                proc.kill()
                raise RuntimeError(f"{cmd[0]}: no result after {CALL_TIMEOUT_S} s")
            time.sleep(0.005)
    except psutil.Error:
        pass
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), f"exit code {proc.returncode}")
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {last.strip()}")
    return wall, peak / (1024.0 * 1024.0), err[-2000:]


def _timings(out_dir: Path) -> list[dict[str, float]]:
    """The per-sample ``timings`` of the inspector's scores.json in out_dir (empty when it wrote none)."""
    try:
        data = json.loads((out_dir / "scores.json").read_text())
    except (OSError, ValueError):
        return []
    return [dict(s["timings"]) for s in (data.get("samples") or {}).values() if isinstance(s.get("timings"), dict)]


def _startup_split(out_dir: Path, wall: float, warm_cloud_s: float | None) -> dict[str, float] | None:
    """One single-cloud process's wall seconds split by the inspector's own clocks (its scores.json
    ``inspector.startup_s`` and the cloud's timings); None when it did not write them (an older binary)."""
    try:
        data = json.loads((out_dir / "scores.json").read_text())
        startup = data["inspector"]["startup_s"]
        (cloud,) = [s["timings"] for s in data["samples"].values()]
        ready = float(startup["main_to_ready"])
        first = sum(float(cloud.get(k, 0.0)) for k in ("read", "render", "encode", "backproject", "score"))
        parts = {k: float(v) for k, v in startup.items() if k != "main_to_ready"}
        split = {"outside_main": wall - ready - first, **parts, "other_setup": ready - sum(parts.values())}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if warm_cloud_s is None:
        split["first_cloud"] = first
    else:
        split.update({"first_cloud_extra": first - warm_cloud_s, "warm_cloud": warm_cloud_s})
    return split


def _median_split(splits: list[dict[str, float]]) -> dict[str, float]:
    import statistics

    return {k: statistics.median(s[k] for s in splits) for k in splits[0]} if splits else {}


def _stages(timings: list[dict[str, float]]) -> dict[str, float]:
    """The inspector's own stage times (median per cloud) in the table's stage names."""
    import statistics

    def med(*keys: str) -> float:
        return statistics.median(sum(float(t.get(k, 0.0)) for k in keys) for t in timings)

    return {"load_uncached": med("read"), "render": med("render"), "encode": med("encode"),
            "backproject": med("backproject", "score")}


def _dataset_args(clouds: CloudSet) -> list[str]:
    args = ["--dataset", clouds.dataset] if clouds.dataset else []
    return args + (["--category", clouds.category] if clouds.category else [])


def inspector_inputs(clouds: CloudSet, folder: Path) -> CloudSet:
    """The files the inspector reads: organized .tiff scans become their preprocessed points (.npy),
    since it does not run the RANSAC plane + DBSCAN preprocessing; other files are given as they are."""
    from dataclasses import replace

    from align3d_rt.io_utils import save_npy_atomic

    if not any(p.suffix.lower() in (".tiff", ".tif") for p, _ in clouds.files):
        return clouds
    load = clouds.loader(use_cache=True)
    files = []
    for item in clouds.files:
        path = folder / f"{item[1]}.npy"
        save_npy_atomic(path, load(item).points)
        files.append((path, item[1]))
    return replace(clouds, files=files, origin=clouds.origin + "; preprocessed points (.npy) for the inspector")


def measure_inspector(binary: Path, bundle: Path, sets: list[CloudSet], out_dir: Path,
                      options: list[str] | None = None) -> dict[str, Any]:
    """Warm-up call (file cache, first load), then per kind: one call per cloud, then one call over all.
    Every call has --overwrite: a later bench over the same --workdir replaces the inspector's earlier outputs;
    ``options`` (e.g. ``--performance-hint THROUGHPUT``) go to every call."""
    sets = [inspector_inputs(c, out_dir / "inputs" / c.kind) for c in sets]
    first = sets[0].files[0][0]
    _run([str(binary), str(bundle), str(first), "--out", str(out_dir / "warmup"), "--overwrite",
          *(options or []), *_dataset_args(sets[0])])
    out: dict[str, Any] = {"by_kind": {}, "binary": str(binary), "bundle": str(bundle)}
    peak_all = 0.0
    for clouds in sets:
        lat, peaks, timings, singles = [], [], [], []
        extra = [*(options or []), *_dataset_args(clouds)]
        for path, key in clouds.files:
            one = out_dir / clouds.kind / key
            wall, peak, _ = _run([str(binary), str(bundle), str(path), "--out", str(one), "--overwrite", *extra])
            lat.append(wall)
            peaks.append(peak)
            timings += _timings(one)
            singles.append((one, wall))
        all_dir = out_dir / clouds.kind / "all"
        wall, peak, _ = _run([str(binary), str(bundle), *(str(p) for p, _ in clouds.files), "--out", str(all_dir),
                              "--overwrite", *extra])
        # the files twice in one process: the second n clouds cost (wall twice - wall once), start-up excluded
        twice_dir = out_dir / clouds.kind / "twice"
        wall2, peak2, _ = _run([str(binary), str(bundle), *(str(p) for p, _ in clouds.files * 2), "--out",
                                str(twice_dir), "--overwrite", *extra])
        peak_all = max(peak_all, peak, peak2, *peaks)
        n = len(clouds.files)
        warm = _timings(twice_dir)[1:]  # after its first cloud: warm, as the Python rows after their warm-up
        rate = n / (wall2 - wall) if wall2 > wall else n / wall  # once started, as the Python rows
        kind: dict[str, Any] = {
            "latency_uncached_s": summary(lat), "latency_per_process": True,
            "best_batch": 1, "files": n, "origin": clouds.origin,
            "fps_per_process": n / wall, "fps_warm": n / (wall2 - wall) if wall2 > wall else None,
            "memory_serial": {"host_peak_rss_mb": max(peaks)}, "memory_by_batch": {"1": {"host_peak_rss_mb": peak}},
            "inspector_timings": timings, "inspector_warm_timings": warm,
            "fps_batch1": rate, "fps_best": rate, "fps_is": "once started" if wall2 > wall else "per process",
        }
        warm_cloud = (statistics.median(sum(float(t.get(k, 0.0)) for k in ("read", "render", "encode",
                                                                            "backproject", "score")) for t in warm)
                      if warm else None)
        splits = [sp for one, wall in singles if (sp := _startup_split(one, wall, warm_cloud)) is not None]
        if splits:
            kind["startup_split_s"] = _median_split(splits)
        if timings:  # the inspector's own stage split (its scores.json), as for the Python rows: warm calls
            stages = _stages(warm or timings)
            kind.update({"stages_s": stages, "encoder_alone_fps": 1.0 / stages["encode"],
                         "end_to_end_over_encoder_fps": kind["fps_best"] * stages["encode"]})
        out["by_kind"][clouds.kind] = kind
    out["memory"] = {"host_peak_rss_mb": peak_all, "host_peak_source": "psutil sampler of the inspector process"}
    return out
