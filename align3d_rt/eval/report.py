"""Result tables (Markdown, CSV, JSON) and the run manifest. All files are written atomically.

Metric keys (fractions in [0,1]; tables print them as percentages):
  O-R       object AUROC            O-A       object average precision
  P-R       point AUROC, reference way (organized 336 grid, blur sigma 4, background included;
            Real3D-AD: plain per-point AUROC)
  P-P       AUPRO, reference way (same grid; paper definition: 200 thresholds, FPR <= 0.3 rescaled)
  P-R (pt)  point AUROC over valid points only (no grid, no blur)
  P-P (pt)  AUPRO over valid points only (regions from the organized grid, unblurred scores)
"""
from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from align3d_rt.io_utils import write_json_atomic, write_text_atomic
from align3d_rt.versions import library_versions

METRIC_KEYS = ("O-R", "O-A", "P-R", "P-P", "P-R (pt)", "P-P (pt)")


@dataclass
class ClassResult:
    """Metrics of one test class."""

    category: str
    n_samples: int
    n_anomalous: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # sample file -> one-line problem (not scored)
    operating: dict[str, Any] | None = None  # with a calibration: OperatingPoint.to_dict() (eval/operating_point.py)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = {k: _clean(v) for k, v in self.metrics.items()}
        return d


def _clean(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def mean_metrics(results: Sequence[ClassResult], keys: Sequence[str] = METRIC_KEYS) -> dict[str, float | None]:
    """Per metric, the mean over the classes that have it (None when none has)."""
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [v for r in results if (v := _clean(r.metrics.get(k))) is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


def _pct(v: float | None) -> str:
    v = _clean(v)
    return "-" if v is None else f"{100.0 * v:.1f}"


def markdown_table(results: Sequence[ClassResult], keys: Sequence[str] = METRIC_KEYS) -> str:
    """One row per class + a mean row; metrics in percent."""
    head = ["class", "n", "anom", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in results:
        cells = [r.category, str(r.n_samples), str(r.n_anomalous), *(_pct(r.metrics.get(k)) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    mean = mean_metrics(results, keys)
    lines.append("| **mean** | " + str(sum(r.n_samples for r in results)) + " | "
                 + str(sum(r.n_anomalous for r in results)) + " | "
                 + " | ".join(f"**{_pct(mean[k])}**" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def operating_section(results: Sequence[ClassResult]) -> str:
    """The operating-point table of the classes evaluated with a calibration ('' when none was)."""
    from align3d_rt.eval.operating_point import OperatingPoint, operating_markdown

    rows = [(r.category, OperatingPoint.from_dict(r.operating)) for r in results if r.operating]
    if not rows:
        return ""
    return ("\n### At the calibrated operating point (object threshold; reject = score > threshold)\n\n"
            + operating_markdown(rows)
            + "\nfalse reject: good parts rejected (90% range: where the count of rejected good parts falls with "
              "90% probability under the conformal rule); false accept: bad parts accepted; F1 with bad = positive; "
              "defects covered: ground-truth defects (single-linkage groups of labelled points, §13.3) sharing a "
              "point with a reported region; regions on defect: reported regions sharing a point with a defect.\n")


def failures_markdown(results: Sequence[ClassResult]) -> str:
    """A section listing the samples that could not be scored ('' when none failed)."""
    rows = [(r.category, f, msg) for r in results for f, msg in sorted(r.failed.items())]
    if not rows:
        return ""
    lines = ["", f"### Failed samples ({len(rows)}, not scored; the metrics above leave them out)", "",
             "| class | file | problem |", "|---|---|---|"]
    lines += [f"| {c} | {f} | {m.replace('|', '/')} |" for c, f, m in rows]
    return "\n".join(lines) + "\n"


def side_by_side_markdown(tables: dict[str, Sequence[ClassResult]],
                          keys: Sequence[str] = ("O-R", "O-A", "P-R", "P-P")) -> str:
    """Several evaluations of the same classes side by side: one column per (metric, label)."""
    labels = list(tables)
    cats: list[str] = []
    for res in tables.values():
        cats += [r.category for r in res if r.category not in cats]
    head = ["class"] + [f"{k} {lab}" for k in keys for lab in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    by = {lab: {r.category: r for r in res} for lab, res in tables.items()}
    for c in cats:
        cells = [_pct(by[lab][c].metrics.get(k)) if c in by[lab] else "-" for k in keys for lab in labels]
        lines.append("| " + " | ".join([c, *cells]) + " |")
    means = {lab: mean_metrics(list(res), keys) for lab, res in tables.items()}
    lines.append("| **mean** | " + " | ".join(f"**{_pct(means[lab][k])}**" for k in keys for lab in labels) + " |")
    return "\n".join(lines) + "\n"


def csv_table(results: Sequence[ClassResult], keys: Sequence[str] = METRIC_KEYS) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "n_samples", "n_anomalous", *keys, "seconds", "n_failed"])
    fmt = lambda v: "" if _clean(v) is None else f"{float(v):.6f}"  # noqa: E731
    for r in results:
        w.writerow([r.category, r.n_samples, r.n_anomalous, *(fmt(r.metrics.get(k)) for k in keys), f"{r.seconds:.2f}",
                    len(r.failed)])
    mean = mean_metrics(results, keys)
    w.writerow(["mean", sum(r.n_samples for r in results), sum(r.n_anomalous for r in results),
                *(fmt(mean[k]) for k in keys), f"{sum(r.seconds for r in results):.2f}",
                sum(len(r.failed) for r in results)])
    return buf.getvalue()


def write_tables(out_dir: str | Path, results: Sequence[ClassResult], name: str = "results",
                 title: str = "", keys: Sequence[str] = METRIC_KEYS) -> dict[str, Path]:
    """Write NAME.md, NAME.csv and NAME.json under out_dir; returns their paths."""
    out = Path(out_dir)
    paths = {"md": out / f"{name}.md", "csv": out / f"{name}.csv", "json": out / f"{name}.json"}
    md = (f"## {title}\n\n" if title else "") + markdown_table(results, keys) + operating_section(results)
    write_text_atomic(paths["md"], md + failures_markdown(results))
    write_text_atomic(paths["csv"], csv_table(results, keys))
    write_json_atomic(paths["json"], {"classes": [r.to_dict() for r in results], "mean": mean_metrics(results, keys),
                                      "metric_keys": list(keys)})
    return paths


def build_manifest(detector_info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What an evaluation used: detector (views preset, renderer, CLIP name + weights hash, seeds,
    backend, precision, bundle hash), library versions, timestamp and the caller's extras
    (protocol, dataset, root, categories...)."""
    rs = detector_info.get("render_settings", {})
    manifest = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "views_preset": rs.get("preset"),
        "renderer": rs.get("renderer"),
        "image_size": rs.get("image_size"),
        "clip_name": detector_info.get("clip_name"),
        "clip_weights_id": detector_info.get("clip_weights_id"),
        "seeds": detector_info.get("seeds"),
        "backend": detector_info.get("backend"),
        "precision": detector_info.get("precision"),
        "bundle_hash": detector_info.get("bundle_hash"),
        "fusion_weight": detector_info.get("fusion_weight"),
        "scoring": detector_info.get("scoring", {"mode": "ours"}),
        "detector": detector_info,
        "library_versions": library_versions(),
    }
    manifest.update(extra)
    return manifest


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(path, manifest)
