"""The bench's batch section: samples/s of every stream pass (clouds per encoder call) and what batches gained."""
from __future__ import annotations

from typing import Any

GAIN_THRESHOLD = 1.05  # a best batch below 5% over batch 1 is reported as no gain (timing noise on a shared CPU)


def _verdict(kind: dict[str, Any], detector: dict[str, Any], cores: Any, views: Any) -> str:
    streams = kind.get("stream") or {}
    if kind.get("fps_warm"):  # the C++ inspector: one cloud at a time, per process
        return (f"one process, one cloud per call: {kind['fps_warm']:.3f}/s once started, "
                f"{kind['fps_per_process']:.3f}/s with its start-up")
    if len(streams) < 2:
        return "only batch 1 measured (fewer clouds than a larger batch, or one process per cloud)"
    gain = kind["fps_best"] / kind["fps_batch1"] if kind.get("fps_batch1") else 0.0
    hint = detector.get("performance_hint")
    how = f"{hint}, {detector.get('infer_requests', 1)} infer request(s); " if hint else ""
    if gain >= GAIN_THRESHOLD and kind["best_batch"] > 1:
        return f"batch {kind['best_batch']}: {gain:.2f}x batch 1 ({how}{cores} usable cores)"
    return (f"no gain: best {kind['best_batch']} at {gain:.2f}x batch 1 ({how}{cores} usable cores: one cloud's "
            f"{views} views already fill them, so a larger call takes as long per cloud)")


def batch_lines(report: dict[str, Any]) -> list[str]:
    """Markdown lines: per measured row and kind, samples/s at each batch size and the verdict."""
    cores, views = report.get("machine", {}).get("usable_cores", "?"), report.get("views", "?")
    sizes = sorted({int(b) for r in report["rows"] if r.get("status") == "ok"
                    for k in r.get("by_kind", {}).values() for b in (k.get("stream") or {})})
    if not sizes:
        return []
    lines = ["", "Batches of clouds (samples/s of the stream pass at each batch size; one encoder call per batch):", "",
             "| Backend | Clouds | " + " | ".join(f"batch {b}" for b in sizes) + " | best batch |",
             "|---|---|" + "---:|" * len(sizes) + "---|"]
    for r in report["rows"]:
        if r.get("status") != "ok":
            continue
        for kind_name, kind in r.get("by_kind", {}).items():
            streams = kind.get("stream") or {}
            cells = [f"{streams[str(b)]['fps']:.3f}" if str(b) in streams else "–" for b in sizes]
            lines.append(f"| {r['label']} | {kind_name} | " + " | ".join(cells) + " | "
                         + _verdict(kind, r.get("detector") or {}, cores, views) + " |")
    return lines
