"""The index page over a folder's result pages: rejects first, then by object score (highest first)."""
from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from align3d_rt.eval.page.assets import read_asset
from align3d_rt.eval.page.part import _fmt
from align3d_rt.io_utils import write_text_atomic


def index_order(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rejects first, then by score descending (normalised when present, else raw), then by key."""
    def score(e: dict[str, Any]) -> float:
        value = e.get("object_score_normalized", e.get("object_score"))
        return float(value) if value is not None else float("-inf")

    return sorted(entries, key=lambda e: (e.get("decision") != "reject", -score(e), str(e["key"])))


def write_index_page(path: str | Path, entries: Iterable[dict[str, Any]], title: str = "align3d_rt results") -> Path:
    """Write PATH (atomically): a table of the parts, one row per entry, and return it.

    entries: dicts with ``key``, ``href`` (the part page, relative to PATH), ``object_score`` and,
    with a calibration, ``decision`` ("ok" / "reject"), ``object_score_normalized``, ``num_regions``.
    """
    path = Path(path)
    ordered = index_order(entries)
    n_reject = sum(e.get("decision") == "reject" for e in ordered)
    calibrated = any(e.get("decision") in ("ok", "reject") for e in ordered)
    rows = []
    for e in ordered:
        decision = e.get("decision")
        shown = {"ok": "OK", "reject": "REJECT"}.get(str(decision), "raw scores")
        css = decision if decision in ("ok", "reject") else "uncalibrated"
        regions = e.get("num_regions")
        rows.append(
            f'<tr class="{css}"><td class="left"><a href="{html.escape(str(e["href"]), quote=True)}">'
            f'{html.escape(str(e["key"]))}</a></td><td class="decision-cell left">{shown}</td>'
            f'<td>{_fmt(e.get("object_score", "n/a"))}</td>'
            f'<td>{_fmt(e.get("object_score_normalized", "n/a"), 3)}</td>'
            f'<td>{"n/a" if regions is None else int(regions)}</td></tr>'
        )
    summary = (f"{len(ordered)} part(s), {n_reject} rejected" if calibrated
               else f"{len(ordered)} part(s); no calibration: raw scores, no decisions")
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
{read_asset("page.css")}
</style></head>
<body><header><h1>{html.escape(title)}</h1><div class="scores" id="summary">{summary}</div></header>
<main><table id="parts">
<tr><th class="left">part</th><th class="left">decision</th><th>object score</th><th>normalised</th>
<th>regions</th></tr>
{"".join(rows)}
</table></main></body></html>
"""
    write_text_atomic(path, text)
    return path
