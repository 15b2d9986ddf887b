"""``infer --html``: a result page per part (KEY.html) and index.html in --out (align3d_rt.eval.page).

Works with or without a calibration: with one, the result carries ``decision`` (a PartDecision:
``to_json()``, ``normalized`` point scores, ``regions.labels``) and the page shows the decision,
the normalised scores and the regions; without, the raw fused scores and "no calibration"."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import quote


def add_html_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", action="store_true",
                   help="also write KEY.html (a self-contained result page per part: 3D cloud, decision, "
                        "regions, views; opens offline) and index.html (rejects first)")


def write_result_page(out: Path, key: str, result: Any, entry: dict[str, Any], fusion_weight: float) -> str:
    """Write out/KEY.html for one scored part; returns its file name. entry: the part's scores.json entry."""
    import numpy as np

    from align3d_rt.eval.page import overlay_views, write_part_page
    from align3d_rt.scoring import fuse_branches

    decision = getattr(result, "decision", None)
    part = dict(entry)
    if decision is not None:
        part.update(decision.to_json())
        scores = np.asarray(decision.normalized, dtype=np.float32)
        regions = getattr(decision, "regions", None)
        labels = getattr(regions, "labels", None)
    else:
        scores, labels = result.fused, None
    views = None
    if result.render is not None and result.view_maps is not None:
        views = overlay_views(result.render.images, fuse_branches(result.view_maps, fusion_weight))
    name = f"{key}.html"
    write_part_page(out / name, key=key, points=result.sample.points, scores=scores, region_labels=labels,
                    part=part, views=views)
    return name


def write_index(out: Path, samples: dict[str, dict[str, Any]]) -> None:
    """out/index.html over the parts that have a page."""
    from align3d_rt.eval.page import write_index_page

    entries = [
        {"key": key, "href": quote(s["outputs"]["html"]), "object_score": s.get("object_score"),
         **{k: s[k] for k in ("decision", "object_score_normalized", "num_regions") if k in s}}
        for key, s in samples.items() if "html" in s.get("outputs", {})
    ]
    write_index_page(out / "index.html", entries, title=f"align3d-rt infer: {out}")
