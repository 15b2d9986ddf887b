"""Benchmark outputs: a Markdown table in the paper's form (Time (s), FPS, Memory (MB)) with the paper's
Table 7 beside ours, the stage split, the JSON with every figure, and a PNG of stacked stage times."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from align3d_rt.eval.bench.batches import batch_lines
from align3d_rt.eval.bench.machine import hardware_label

# The paper's Table 7: batch 1, 9 views per sample, GPU memory.
PAPER_TABLE7 = (
    {"method": "Align3D-AD (paper, Table 7)", "hardware": "RTX 4090", "time_s": 0.19, "fps": 5.30, "memory_mb": 2791},
    {"method": "PointAD (paper, Table 7)", "hardware": "RTX 4090", "time_s": 0.18, "fps": 5.68, "memory_mb": 2460},
)
STARTUP_LABELS = {"outside_main": "process start/exit + writing outputs",
                  "load_bundle": "manifest + sha256 of the files hashed first",
                  "load_encoder": "encoder compile/cache import",
                  "wait_files": "wait for the files hashed meanwhile", "other_setup": "other set-up",
                  "first_cloud_extra": "first cloud's extra", "first_cloud": "first cloud",
                  "warm_cloud": "one warm cloud"}
STAGE_LABELS = {"load_uncached": "load + preprocess", "load_cached": "load (cached)", "render": "render",
                "encode": "encode", "backproject": "back-project + score", "write": "blur + write"}
CHART_STAGES = ("load_uncached", "render", "encode", "backproject", "write")


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def memory_mb(result: dict[str, Any]) -> tuple[float | None, str]:
    """The memory column: GPU peak reserved on a GPU row (NVML growth otherwise), host peak RSS on a CPU row."""
    mem = result.get("memory") or {}
    if result.get("device") == "cuda":
        if "gpu_peak_reserved_mb" in mem:
            return mem["gpu_peak_reserved_mb"], "GPU reserved"
        if "nvml_peak_used_mb" in mem:
            return mem["nvml_peak_used_mb"] - mem.get("nvml_used_before_mb", 0.0), "GPU (NVML)"
    return mem.get("host_peak_rss_mb"), "host RSS"


def _baseline(report: dict[str, Any], kind: str) -> dict[str, Any] | None:
    base_id = report.get("baseline_row")
    for r in report["rows"]:
        if r["row_id"] == base_id and r.get("status") == "ok" and kind in r.get("by_kind", {}):
            return r["by_kind"][kind]
    return None


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    kinds = report["kinds"]
    lines = [f"### align3d-rt bench: {report['clip']} ({report['weights']} weights), {report['views']} views, "
             f"batch 1 latency, {report['samples']} clouds per kind",
             "",
             f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable of {machine['logical_cores']} logical "
             f"cores, {machine['memory_mb'] / 1024:.0f} GiB; GPU: {machine['gpu'].get('name', 'none')}; "
             f"load average {_f(report.get('loadavg_start'), 1)} -> {_f(report.get('loadavg_end'), 1)}. "
             + (report.get("note") or ""),
             "",
             "| Method / backend | Hardware | Clouds | Time (s) | p95 (s) | Time, cached (s) | FPS | FPS best (batch) "
             "| Memory (MB) | Time vs baseline | FPS vs baseline |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in PAPER_TABLE7:
        lines.append(f"| {p['method']} | {p['hardware']} | MVTec 3D-AD / Real3D-AD | {p['time_s']:.2f} | – | – | "
                     f"{p['fps']:.2f} | – | {p['memory_mb']} (GPU) | | |")
    for r in report["rows"]:
        if r.get("status") != "ok":
            continue
        hw = hardware_label(machine, r["device"])
        mem, what = memory_mb(r)
        for kind in kinds:
            k = r["by_kind"].get(kind)
            if k is None:
                continue
            base = _baseline(report, kind)
            t = k["latency_uncached_s"]["median"]
            rt = rf = "–"
            if base is not None:
                rt = f"{t / base['latency_uncached_s']['median']:.2f}x"
                rf = f"{k['fps_best'] / base['fps_best']:.2f}x"
            cached = k.get("latency_cached_s", {}).get("median")
            lines.append(f"| {r['label']} | {hw} | {kind} ({_f(k.get('points_mean'), 0)} pts) | {t:.3f} | "
                         f"{k['latency_uncached_s']['p95']:.3f} | {_f(cached)} | {k['fps_batch1']:.3f} | "
                         f"{k['fps_best']:.3f} ({k['best_batch']}) | {_f(mem, 0)} ({what}) | {rt} | {rf} |")
    per_process = [f"{r['label']} {kind}: {k['fps_per_process']:.3f}/s" for r in report["rows"]
                   if r.get("status") == "ok" for kind, k in r.get("by_kind", {}).items() if "fps_per_process" in k]
    if per_process:
        lines += ["", "C++ inspector rows: FPS is the rate once started (as for the Python rows, whose detector is "
                  "loaded and warmed before timing); Time is one process per cloud. One process over all clouds, "
                  "start-up included (process start, hashing every bundle file, compile from cache, first call): "
                  + "; ".join(per_process) + "."]
    splits = [f"{r['label']} {kind}: " + ", ".join(f"{STARTUP_LABELS.get(name, name)} {sec:.3f} s"
                                                  for name, sec in k["startup_split_s"].items())
              for r in report["rows"] if r.get("status") == "ok" for kind, k in r.get("by_kind", {}).items()
              if k.get("startup_split_s")]
    if splits:
        lines += ["", "C++ inspector, one process per cloud, where its time goes (median over the clouds; the "
                  "inspector's own clocks, the rest of the wall clock is outside main): " + "; ".join(splits) + "."]
    lines += ["", "Stage split (median seconds per cloud, serial batch-1 pass); encoder-alone FPS = 1 / encode on "
              "the same views; end to end / encoder = best FPS / encoder-alone FPS:", "",
              "| Backend | Clouds | " + " | ".join(STAGE_LABELS.values()) + " | encoder-alone FPS | end to end / "
              "encoder |", "|---|---|" + "---:|" * (len(STAGE_LABELS) + 2)]
    for r in report["rows"]:
        if r.get("status") != "ok":
            continue
        for kind in kinds:
            k = r["by_kind"].get(kind)
            if k is None or "stages_s" not in k:
                continue
            st = k["stages_s"]
            lines.append(f"| {r['label']} | {kind} | " + " | ".join(_f(st.get(s), 3) for s in STAGE_LABELS)
                         + f" | {k['encoder_alone_fps']:.3f} | {k['end_to_end_over_encoder_fps']:.2f} |")
    lines += batch_lines(report)
    other = [r for r in report["rows"] if r.get("status") != "ok"]
    if other:
        lines += ["", "Rows not measured:", ""]
        lines += [f"- {r['label']} ({r['row_id']}): {r.get('status')}: {r.get('reason')}" for r in other]
    best = report.get("best_cpu")
    if best:
        lines += ["", f"Best CPU row by FPS: {best['label']}; end-to-end FPS / encoder-alone FPS: "
                  + ", ".join(f"{kind} {v:.2f}" for kind, v in best["ratio_by_kind"].items())
                  + f" (target >= {report['target_e2e_over_encoder']})."]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    """Horizontal stacked bars: the median stage seconds of every measured (row, kind)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from align3d_rt.io_utils import atomic_path

    bars = [(f"{r['label']} / {kind}", r["by_kind"][kind]["stages_s"]) for r in report["rows"]
            if r.get("status") == "ok" for kind in report["kinds"]
            if kind in r.get("by_kind", {}) and "stages_s" in r["by_kind"][kind]]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * max(1, len(bars))))
    left = [0.0] * len(bars)
    for stage in CHART_STAGES:
        widths = [st.get(stage, 0.0) for _, st in bars]
        ax.barh(range(len(bars)), widths, left=left, label=STAGE_LABELS[stage])
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(bars)), [name for name, _ in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per cloud (batch 1, median)")
    ax.set_title(f"{report['clip']} ({report['weights']} weights), {report['views']} views: stage split")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_outputs(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """bench.md, bench.json and bench.png under out_dir (each written atomically)."""
    from align3d_rt.io_utils import write_json_atomic, write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "bench.md", "json": out_dir / "bench.json", "png": out_dir / "bench.png"}
    write_json_atomic(paths["json"], report)
    write_text_atomic(paths["markdown"], markdown(report))
    chart(report, paths["png"])
    return paths
