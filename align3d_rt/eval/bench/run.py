"""``run_bench``: every selected row, each in its own process by default, then the table, JSON and chart.

A row's process exports the bundle it needs (kept under the work folder for the next run), builds the
Detector and measures it (``measure.py``). Its own process gives it a clean memory figure and keeps a
crash (e.g. in a quantizer) from ending the benchmark: the row is reported as failed with its last
line and the others go on. Outputs are rewritten after every row, so a long run leaves its figures
so far. ``isolate=False`` measures in this process (tests, pytest-benchmark).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from align3d_rt.eval.bench import rows as rowlib
from align3d_rt.eval.bench.inputs import MVTEC_SCAN_SIZE, cloud_sets
from align3d_rt.eval.bench.machine import describe_machine
from align3d_rt.eval.bench.measure import MeasureSettings, measure_detector, measure_loads
from align3d_rt.eval.bench.report import write_outputs
from align3d_rt.runtime import registry

TARGET_E2E_OVER_ENCODER = 0.75


@dataclass
class BenchConfig:
    """What to benchmark and where. ``rows``: row ids or backend names (None: every row)."""

    out: Path
    clip: str = "ViT-L-14-336"
    run: Path | None = None
    workdir: Path | None = None
    kinds: tuple[str, ...] = ("mvtec", "real3d")
    samples: int = 3
    device: str = "auto"
    rows: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] = (1, 2, 4)
    warmup_each_batch: bool = True
    isolate: bool = True
    row_timeout_s: float = 3600.0
    roots: dict[str, tuple[Path, str]] = field(default_factory=dict)
    inspector: Path | None = None
    inspector_precision: str = "int8"
    inspector_performance_hint: str = "LATENCY"
    note: str = ""
    mvtec_scan_size: tuple[int, int] = MVTEC_SCAN_SIZE
    skip: dict[str, str] = field(default_factory=dict)  # row id -> why it is not measured in this run

    @property
    def work(self) -> Path:
        return self.workdir or self.out / "work"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return json.loads(json.dumps(d, default=str))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BenchConfig:
        d = dict(d)
        for key in ("out", "run", "workdir", "inspector"):
            d[key] = Path(d[key]) if d.get(key) else None
        d["kinds"] = tuple(d["kinds"])
        d["rows"] = tuple(d["rows"]) if d.get("rows") else None
        d["batch_sizes"] = tuple(d["batch_sizes"])
        d["mvtec_scan_size"] = tuple(d.get("mvtec_scan_size") or MVTEC_SCAN_SIZE)
        d["roots"] = {k: (Path(v[0]), v[1]) for k, v in (d.get("roots") or {}).items()}
        return cls(**d)


def baseline_row_id() -> str:
    """The paper's baseline: the first variant of the registry's default run backend (eager fp32)."""
    name = registry.default_backend("run")
    return f"{name}:{registry.get(name).bench_variants()[0].key}"


def plan(config: BenchConfig) -> list[rowlib.Row]:
    """The selected rows, with skip reasons where a row cannot run here."""
    from align3d_rt.runtime.devices import cuda_available

    gpu = cuda_available()
    device = "cuda" if config.device == "cuda" or (config.device == "auto" and gpu) else "cpu"
    rows = rowlib.all_rows(device, gpu, config.inspector, config.inspector_precision,
                           config.inspector_performance_hint)
    unknown = sorted(set(config.skip) - {r.row_id for r in rows})
    if unknown:
        from align3d_rt.errors import Align3DError

        raise Align3DError(f"--skip: unknown row(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(r.row_id for r in rows)}")
    for row in rows:
        if row.row_id in config.skip and not row.skip_reason:
            row.skip_reason = f"skipped in this run: {config.skip[row.row_id]}"
    return rowlib.select_rows(rows, list(config.rows) if config.rows else None)


def measure_row(row: rowlib.Row, config: BenchConfig, loads: dict[str, Any]) -> dict[str, Any]:
    """Measure one row in this process (``loads``: from ``measure_loads``); a failure becomes status
    'failed' with a one-line reason."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {**row.to_dict(), "status": "ok", "reason": ""}
    try:
        sets = cloud_sets(config.work, list(config.kinds), config.samples, config.roots, config.mvtec_scan_size)
        settings = MeasureSettings(batch_sizes=config.batch_sizes, warmup_each_batch=config.warmup_each_batch)
        scratch = config.work / "outputs" / row.row_id.replace(":", "_")
        if row.source == "inspector":
            from align3d_rt.eval.bench.inspector import measure_inspector

            run_dir = rowlib.ensure_run(config.work, config.clip, config.run)
            bundle, export_s = rowlib.ensure_bundle(config.work, run_dir, config.clip, row.export_format, row.precision,
                                                    row.export_options)
            out["prep"] = {"bundle": str(bundle), "export_s": export_s}
            assert config.inspector is not None
            out.update(measure_inspector(config.inspector, bundle, sets, scratch,
                                         ["--performance-hint", row.options.get("performance_hint", "LATENCY")]))
        else:
            detector, out["prep"] = rowlib.build_detector(row, config.work, config.clip, config.run)
            out.update(measure_detector(detector, sets, settings, scratch, loads))
    except Exception as err:  # noqa: BLE001 - one row failing must not stop the others; reported with its line
        out["status"], out["reason"] = "failed", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        out["traceback"] = traceback.format_exc()[-4000:]
    out["wall_s"] = time.perf_counter() - t0
    return out


def _package_root() -> str:
    import align3d_rt

    return str(Path(align3d_rt.__file__).resolve().parents[1])


def measure_row_isolated(row: rowlib.Row, config: BenchConfig, loads: dict[str, Any], log_dir: Path
                         ) -> dict[str, Any]:
    """Measure one row in a child process (``python -m align3d_rt.eval.bench.worker``), bounded in time."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = row.row_id.replace(":", "_")
    request, result, log = log_dir / f"{stem}.request.json", log_dir / f"{stem}.result.json", log_dir / f"{stem}.log"
    from align3d_rt.io_utils import write_json_atomic

    write_json_atomic(request, {"config": config.to_json(), "row": row.to_dict(), "loads": loads})
    result.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p))
    base = {**row.to_dict(), "status": "failed"}
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as log_file:
        try:
            proc = subprocess.run([sys.executable, "-m", "align3d_rt.eval.bench.worker", str(request), str(result)],
                                  stdout=log_file, stderr=subprocess.STDOUT, env=env, timeout=config.row_timeout_s)
        except subprocess.TimeoutExpired:
            return {**base, "reason": f"no result within {config.row_timeout_s:.0f} s (--row-timeout); log: {log}",
                    "wall_s": time.perf_counter() - t0}
    if proc.returncode == 0 and result.is_file():
        return json.loads(result.read_text())
    how = (f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
           else f"exit code {proc.returncode}")
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return {**base, "reason": f"worker {how}: {lines[-1] if lines else 'no output'} (log: {log})",
            "wall_s": time.perf_counter() - t0}


def best_cpu(rows: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, Any] | None:
    """The measured CPU registry row with the highest mean best FPS, and its end-to-end / encoder ratios."""
    cands = [r for r in rows if r.get("status") == "ok" and r.get("device") == "cpu" and r.get("backend")
             and all(k in r.get("by_kind", {}) for k in kinds)]
    if not cands:
        return None
    best = max(cands, key=lambda r: sum(r["by_kind"][k]["fps_best"] for k in kinds) / len(kinds))
    return {"row_id": best["row_id"], "label": best["label"],
            "ratio_by_kind": {k: best["by_kind"][k]["end_to_end_over_encoder_fps"] for k in kinds},
            "target_met": all(best["by_kind"][k]["end_to_end_over_encoder_fps"] >= TARGET_E2E_OVER_ENCODER
                              for k in kinds)}


def run_bench(config: BenchConfig, progress: Any = None) -> dict[str, Any]:
    """Measure every planned row; returns the report (also written under config.out after every row)."""
    from align3d_rt.render.views import settings_for

    rows = plan(config)
    config.out.mkdir(parents=True, exist_ok=True)
    config.work.mkdir(parents=True, exist_ok=True)
    # generated once
    sets = cloud_sets(config.work, list(config.kinds), config.samples, config.roots, config.mvtec_scan_size)
    if progress:
        progress("align3d-rt bench: timing loading + preprocessing (uncached and cached) once per cloud ...")
    loads = measure_loads(sets)
    machine = describe_machine()
    report: dict[str, Any] = {
        "clip": config.clip, "weights": "trained run" if config.run else "random",
        "views": settings_for(*_mvtec_settings()).num_views, "samples": config.samples, "kinds": list(config.kinds),
        "config": config.to_json(), "machine": machine, "loadavg_start": machine["loadavg_1m"],
        "baseline_row": baseline_row_id(), "target_e2e_over_encoder": TARGET_E2E_OVER_ENCODER,
        "note": config.note, "loads_s": loads, "rows": [],
    }
    for row in rows:
        if row.skip_reason:
            res = {**row.to_dict(), "status": "skipped", "reason": row.skip_reason}
        else:
            if progress:
                progress(f"align3d-rt bench: measuring {row.row_id} ...")
            res = (measure_row_isolated(row, config, loads, config.out / "logs") if config.isolate
                   else measure_row(row, config, loads))
            if progress:
                progress(f"align3d-rt bench: {row.row_id}: {res['status']} {res.get('reason', '')}".rstrip()
                         + f" ({res.get('wall_s', 0.0):.0f} s)")
        report["rows"].append(res)
        report["loadavg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        report["best_cpu"] = best_cpu(report["rows"], config.kinds)
        write_outputs(report, config.out)
    return report


def _mvtec_settings() -> tuple[str, str]:
    from align3d_rt.eval.bench.inputs import MVTEC_SETTINGS

    return MVTEC_SETTINGS
