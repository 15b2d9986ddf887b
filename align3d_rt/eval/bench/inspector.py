"""The C++ inspector row: ``align3d-inspect BUNDLE CLOUD... --out DIR`` timed from outside, like a user runs it.

The binary comes from ALIGN3D_INSPECT or build/cpp (CMake). It writes per cloud KEY scores .npy and a
JSON with the object score and its own timings. Measured here:
  latency   one process per cloud (start, model load, score, write: what one call costs), median/p95
  fps       one process over every cloud: clouds / wall seconds (the model is loaded once)
  memory    the process's peak RSS (psutil, sampled every 5 ms)
The ONNX bundle it reads is the one the ONNX Runtime rows use (FORMAT at the row's precision).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from align3d_rt.eval.bench.inputs import CloudSet
from align3d_rt.eval.bench.measure import summary

ENV_VAR = "ALIGN3D_INSPECT"
BINARY_NAME = "align3d-inspect"
FORMAT = "onnx"
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


def _reports(out_dir: Path) -> list[Any]:
    found = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def measure_inspector(binary: Path, bundle: Path, sets: list[CloudSet], out_dir: Path) -> dict[str, Any]:
    """Warm-up call (file cache, first load), then per kind: one call per cloud, then one call over all."""
    first = sets[0].files[0][0]
    _run([str(binary), str(bundle), str(first), "--out", str(out_dir / "warmup")])
    out: dict[str, Any] = {"by_kind": {}, "binary": str(binary), "bundle": str(bundle)}
    peak_all = 0.0
    for clouds in sets:
        lat, peaks = [], []
        for path, key in clouds.files:
            wall, peak, _ = _run([str(binary), str(bundle), str(path), "--out", str(out_dir / clouds.kind / key)])
            lat.append(wall)
            peaks.append(peak)
        all_dir = out_dir / clouds.kind / "all"
        wall, peak, _ = _run([str(binary), str(bundle), *(str(p) for p, _ in clouds.files), "--out", str(all_dir)])
        peak_all = max(peak_all, peak, *peaks)
        n = len(clouds.files)
        out["by_kind"][clouds.kind] = {
            "latency_uncached_s": summary(lat), "latency_per_process": True,
            "fps_batch1": n / wall, "best_batch": 1, "fps_best": n / wall, "files": n, "origin": clouds.origin,
            "memory_serial": {"host_peak_rss_mb": max(peaks)}, "memory_by_batch": {"1": {"host_peak_rss_mb": peak}},
            "inspector_reports": _reports(all_dir),
        }
    out["memory"] = {"host_peak_rss_mb": peak_all, "host_peak_source": "psutil sampler of the inspector process"}
    return out
