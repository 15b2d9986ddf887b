"""A small generated part for the result-page tests: a wavy sheet with one planted hot spot, its
region (fields as runtime-spec 13.3 names them) and the calibrated per-part JSON."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PlantedPart:
    points: np.ndarray  # (N,3) f32
    raw: np.ndarray  # (N,) f32 raw fused scores
    normalized: np.ndarray  # (N,) f32 in [0,1], 0.5 = point threshold
    labels: np.ndarray  # (N,) i32 region ids
    part: dict[str, Any]  # calibrated scores.json entry


def planted_part(side: int = 60, decision: str = "reject", seed: int = 0) -> PlantedPart:
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1.0, 1.0, side), np.linspace(-1.0, 1.0, side))
    pts = np.column_stack([u.ravel(), v.ravel(),
                           0.15 * np.sin(3 * u.ravel()) * np.cos(2 * v.ravel())]).astype(np.float32)
    d = np.linalg.norm(pts[:, :2] - np.array([0.45, 0.3]), axis=1)
    raw = (0.2 + 0.05 * rng.random(len(pts)) + 0.7 * np.exp(-(d / 0.12) ** 2)).astype(np.float32)
    t, lo, hi = 0.5, float(raw.min()), float(raw.max())
    normalized = np.clip(0.5 + (raw.astype(np.float64) - t) / (hi - lo), 0, 1).astype(np.float32)
    labels = (raw > t).astype(np.int32)
    idx = np.flatnonzero(labels)
    p = pts[idx].astype(np.float64)
    region = {
        "id": 1, "num_points": int(idx.size), "seed_index": int(idx[np.argmax(raw[idx])]),
        "centroid": p.mean(axis=0).tolist(), "bbox_min": p.min(axis=0).tolist(), "bbox_max": p.max(axis=0).tolist(),
        "extent": (p.max(axis=0) - p.min(axis=0)).tolist(), "area": float(idx.size * (2 / (side - 1)) ** 2),
        "max_score": float(raw[idx].max()), "mean_score": float(raw[idx].mean()),
        "max_score_normalized": float(normalized[idx].max()),
    }
    part = {"file": "/data/part.tiff", "object_score": 0.91 if decision == "reject" else 0.42,
            "decision": decision, "object_score_normalized": 0.83 if decision == "reject" else 0.47,
            "regions": [region], "num_regions": 1}
    return PlantedPart(pts, raw, normalized, labels, part)


def embedded_data(page_text: str) -> dict[str, Any]:
    """The page's part data (the JSON in <script id="part-data">)."""
    m = re.search(r'<script type="application/json" id="part-data">(.*?)</script>', page_text, re.S)
    assert m is not None, "no part-data script in the page"
    return json.loads(m.group(1))


def decode(b64: str, dtype: str) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(b64), dtype=dtype)
