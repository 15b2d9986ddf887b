"""One self-contained HTML result page per part: the cloud in 3D coloured by score (three.js,
inlined), the decision, the defect regions (marked and numbered in 3D, listed in a table) and the
rendered views. No network: every script, style and image is inside the file."""
from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.errors import Align3DError
from align3d_rt.eval.page.assets import THREE_JS, inline_script, read_asset
from align3d_rt.eval.page.views import views_as_png
from align3d_rt.io_utils import json_default, write_text_atomic

MAX_DRAW_POINTS = 150_000  # clouds above this are subsampled for drawing (region points always kept)
PAGE_FORMAT = "align3d_rt.result_page"


def write_part_page(
    path: str | Path,
    *,
    key: str,
    points: np.ndarray,
    scores: np.ndarray,
    region_labels: np.ndarray | None,
    part: dict[str, Any],
    views: np.ndarray | Sequence[bytes] | None,
    max_draw_points: int = MAX_DRAW_POINTS,
) -> Path:
    """Write PATH (atomically) and return it.

    points (N,3) f32 the scored points; scores (N,) f32: normalised point scores when the part has a
    calibration (``part["decision"]`` present), else the raw fused scores; region_labels (N,) int32
    region id per point (0 = none) or None; part: the part's scores.json entry (object_score, and
    with a calibration decision, object_score_normalized, regions); views: (V,S,S,3) uint8 overlay
    images or PNG bytes per view (or None).
    """
    path = Path(path)
    try:
        pts, sc, labels = _checked_arrays(points, scores, region_labels)
        _check_regions(part)
        pngs = views_as_png(views)
        drawn = _drawn_rows(labels, len(sc), max_draw_points)
        data = _page_data(key, pts, sc, labels, part, drawn)
        text = _page_html(key, part, data, pngs)
    except (ValueError, TypeError) as err:
        raise Align3DError(f"{path}: cannot write the result page: {err}") from None
    write_text_atomic(path, text)
    return path


def _checked_arrays(points: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    pts = np.asarray(points, dtype=np.float32)
    sc = np.asarray(scores, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
        raise ValueError(f"points must be (N,3) with N > 0, got {pts.shape}")
    if sc.shape != (pts.shape[0],):
        raise ValueError(f"scores must be ({pts.shape[0]},), got {sc.shape}")
    if not (np.isfinite(pts).all() and np.isfinite(sc).all()):
        raise ValueError("non-finite points or scores")
    if labels is None:
        return pts, sc, None
    lab = np.asarray(labels)
    if lab.shape != sc.shape or not np.issubdtype(lab.dtype, np.integer) or (lab < 0).any():
        raise ValueError(f"region_labels must be ({pts.shape[0]},) non-negative ints")
    return pts, sc, lab.astype(np.int32)


REGION_FIELDS = ("id", "num_points", "centroid", "bbox_min", "bbox_max", "extent", "area", "max_score")


def _check_regions(part: dict[str, Any]) -> None:
    """The region fields the page draws and lists (runtime-spec 13.3) must be there."""
    for i, region in enumerate(part.get("regions") or []):
        missing = [k for k in REGION_FIELDS if k not in region]
        if missing:
            raise ValueError(f"region {i + 1} lacks {', '.join(missing)}")


def _drawn_rows(labels: np.ndarray | None, n: int, max_draw: int) -> np.ndarray:
    """Rows to draw: all of them up to max_draw, else every region point plus a seeded random
    subset of the others (ascending)."""
    if n <= max_draw:
        return np.arange(n, dtype=np.int64)
    in_region = labels > 0 if labels is not None else np.zeros(n, dtype=bool)
    others = np.flatnonzero(~in_region)
    take = max(0, max_draw - int(in_region.sum()))
    chosen = np.random.default_rng(0).choice(others, size=min(take, others.size), replace=False)
    return np.sort(np.concatenate([np.flatnonzero(in_region), chosen]))


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _point_size(pts: np.ndarray) -> float:
    """Drawn point size in cloud units: 1.5x the median distance to the 4th nearest neighbour
    (the grid spacing on a regular grid; fills the gaps of an irregular scan too)."""
    from scipy.spatial import cKDTree

    unique = np.unique(pts, axis=0)
    if unique.shape[0] < 2:
        return 1.0
    k = min(5, unique.shape[0])
    dist, _ = cKDTree(unique).query(unique, k=k)
    spacing = float(np.median(dist[:, k - 1]))
    extent = float(np.ptp(unique, axis=0).max())
    return 1.5 * spacing if spacing > 0 else max(extent * 0.01, 1e-6)


def _colormap() -> list[list[int]]:
    from align3d_rt.eval.outputs import heat_colors

    rgb = heat_colors(np.linspace(0.0, 1.0, 256), 0.0, 1.0)
    return np.rint(rgb * 255).astype(int).tolist()


def _page_data(key: str, pts: np.ndarray, sc: np.ndarray, labels: np.ndarray | None,
               part: dict[str, Any], drawn: np.ndarray) -> dict[str, Any]:
    calibrated = "decision" in part
    lo, hi = (0.0, 1.0) if calibrated else (float(sc.min()), float(sc.max()))
    d_pts = pts[drawn]
    bb_min, bb_max = pts.min(axis=0).astype(np.float64), pts.max(axis=0).astype(np.float64)
    radius = max(float(np.linalg.norm(bb_max - bb_min)) / 2.0, 1e-6)
    return {
        "format": PAGE_FORMAT,
        "format_version": 1,
        "key": key,
        "calibrated": calibrated,
        "part": part,
        "cloud": {
            "num_points": int(len(sc)),
            "num_drawn": int(len(drawn)),
            "rows": _b64(drawn, "<i4"),
            "points": _b64(d_pts, "<f4"),
            "scores": _b64(sc[drawn], "<f4"),
            "labels": _b64(labels[drawn], "<i4") if labels is not None else None,
            "score_kind": "normalized" if calibrated else "raw fused",
            "score_range": [lo, hi],
            "center": ((bb_min + bb_max) / 2.0).tolist(),
            "radius": radius,
            "point_size": _point_size(d_pts),
            "colormap": _colormap(),
        },
    }


def embed_json(obj: Any) -> str:
    """JSON safe inside <script type="application/json"> ('<' escaped; non-finite refused)."""
    return json.dumps(obj, default=json_default, allow_nan=False).replace("<", "\\u003c")


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, (list, tuple)):
        return "(" + ", ".join(_fmt(v, digits) for v in x) + ")"
    if isinstance(x, (float, np.floating)) and math.isfinite(float(x)):
        return f"{float(x):.{digits}g}"
    return html.escape(str(x))


def decision_banner(part: dict[str, Any]) -> str:
    decision = part.get("decision")
    if decision in ("ok", "reject"):
        return f'<div class="decision {decision}" id="decision">{"OK" if decision == "ok" else "REJECT"}</div>'
    return '<div class="decision uncalibrated" id="decision">no calibration: raw scores</div>'


def _score_lines(part: dict[str, Any]) -> str:
    lines = [f"object score <b>{_fmt(part.get('object_score', 'n/a'))}</b>"]
    if "object_score_normalized" in part:
        lines.append(f"normalised <b>{_fmt(part['object_score_normalized'], 3)}</b> (0.5 = threshold)")
    if "decision" in part:
        lines.append(f"{len(part.get('regions') or [])} region(s)")
    return "<br>".join(lines)


def _regions_table(part: dict[str, Any]) -> str:
    if "decision" not in part:
        return "<p>Regions need a calibration (<code>--calibration</code>): none computed.</p>"
    regions = part.get("regions") or []
    if not regions:
        return "<p>No region: no point above the point threshold.</p>"
    head = ("<tr><th>#</th><th>points</th><th class=left>centroid (x, y, z)</th>"
            "<th class=left>extent (x, y, z)</th><th>area</th><th>max score</th>"
            "<th>max (normalised)</th><th>mean score</th></tr>")
    rows = [
        f"<tr><td>{int(r['id'])}</td><td>{int(r['num_points'])}</td>"
        f"<td class=left>{_fmt(r['centroid'])}</td><td class=left>{_fmt(r['extent'])}</td>"
        f"<td>{_fmt(r['area'])}</td><td>{_fmt(r['max_score'])}</td>"
        f"<td>{_fmt(r.get('max_score_normalized', 'n/a'), 3)}</td><td>{_fmt(r.get('mean_score', 'n/a'))}</td></tr>"
        for r in regions
    ]
    note = ""
    if part.get("decision") == "ok":
        note = ("<p class=note>The decision rests on the object score alone: this part is OK, yet some "
                "points lie above the point threshold (the regions below).</p>")
    return note + '<table id="regions">' + head + "".join(rows) + "</table>"


def _views_html(pngs: list[bytes]) -> str:
    if not pngs:
        return "<p>No rendered views.</p>"
    figs = [
        f'<figure><img alt="view {i}" src="data:image/png;base64,{base64.b64encode(p).decode("ascii")}">'
        f"<figcaption>view {i}</figcaption></figure>"
        for i, p in enumerate(pngs)
    ]
    return '<div class="views">' + "".join(figs) + "</div>"


def _page_html(key: str, part: dict[str, Any], data: dict[str, Any], pngs: list[bytes]) -> str:
    cloud = data["cloud"]
    kind = "normalised point score (0.5 = point threshold)" if data["calibrated"] else "raw fused point score"
    lo, hi = cloud["score_range"]
    subsample = ""
    if cloud["num_drawn"] < cloud["num_points"]:
        subsample = (f'<span class=note id="subsampled">drawing {cloud["num_drawn"]:,} of {cloud["num_points"]:,} '
                     "points (every region point kept; the others a random subset)</span>")
    source = html.escape(str(part.get("file", "")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(key)}: {html.escape(str(part.get("decision", "raw scores")))}</title>
<style>
{read_asset("page.css")}
</style></head>
<body>
<header>{decision_banner(part)}<div><h1>{html.escape(key)}</h1><div class="scores">{_score_lines(part)}</div>
<div class="scores">{cloud["num_points"]:,} points{(" &middot; " + source) if source else ""}</div></div></header>
<main>
<div class="controls">
<span>drag: rotate &middot; wheel: zoom &middot; right/shift-drag: pan &middot; double-click: reset</span>
<label>point size <input id="point-size" type="range" min="0.25" max="4" step="0.05" value="1"></label>
<label><input id="mark-regions" type="checkbox" checked> mark regions</label>{subsample}</div>
<div class="viewer"><div class="canvas-box"><canvas id="cloud-canvas"></canvas><div id="cloud-labels"></div></div>
<div class="legend"><span>{_fmt(hi, 3)}</span><canvas id="colour-bar" width="22" height="480"></canvas>
<span>{_fmt(lo, 3)}</span>
<span style="margin-top:6px;text-align:center">{kind}</span></div></div>
<h2>Regions</h2>
{_regions_table(part)}
<h2>Rendered views (fused anomaly map)</h2>
{_views_html(pngs)}
</main>
<script type="application/json" id="part-data">{embed_json(data)}</script>
{inline_script(THREE_JS)}
{inline_script("part.js")}
</body></html>
"""
