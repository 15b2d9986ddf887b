"""Evaluation: per-class accumulation, tables (md/csv/json), manifest, pictures, one-vs-rest class selection."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from infer_eval_support import fake_detector

from align3d_rt.data.sample import PointCloudSample
from align3d_rt.errors import Align3DError
from align3d_rt.eval.protocols import ClassScores, run_protocol, select_classes, training_origin
from align3d_rt.eval.report import (
    ClassResult,
    csv_table,
    markdown_table,
    mean_metrics,
    side_by_side_markdown,
    write_tables,
)


def _grid_sample(label: str, anomalous_cells: slice | None,
                 rng: np.random.Generator) -> tuple[PointCloudSample, np.ndarray]:
    h = w = 16
    idx = np.sort(rng.choice(h * w, size=180, replace=False)).astype(np.int64)
    labels = np.zeros(idx.size, np.uint8)
    if anomalous_cells is not None:
        labels[anomalous_cells] = 1
    s = PointCloudSample(points=rng.random((idx.size, 3)).astype(np.float32), label_name=label, category="c",
                         point_labels=labels, grid_shape=(h, w), grid_index=idx, source=f"{label}.tiff")
    scores = rng.random(idx.size).astype(np.float32) * 0.5 + labels * 0.6  # anomalous points score higher
    return s, scores


def test_class_scores_perfect_separation() -> None:
    rng = np.random.default_rng(0)
    acc = ClassScores()
    for i in range(3):
        s, sc = _grid_sample("good", None, rng)
        acc.add(s, sc, object_score=0.1 + 0.01 * i)
    for i in range(3):
        s, sc = _grid_sample("hole", slice(40, 70), rng)
        acc.add(s, sc, object_score=0.9 + 0.01 * i)
    m = acc.compute()
    assert m["O-R"] == pytest.approx(1.0) and m["O-A"] == pytest.approx(1.0)
    assert m["P-R (pt)"] == pytest.approx(1.0) and m["P-P (pt)"] == pytest.approx(1.0, abs=0.02)
    assert 0.5 < m["P-R"] <= 1.0 and 0.0 < m["P-P"] <= 1.0  # blurred grid with background: high but not exact
    assert all(a.dtype == np.float32 for a in acc.point_scores) and all(a.dtype == np.uint8 for a in acc.point_labels)


def test_class_scores_unorganized_and_undefined() -> None:
    rng = np.random.default_rng(1)
    acc = ClassScores()
    for label in ("good", "good"):
        s, sc = _grid_sample(label, None, rng)
        s.grid_index, s.grid_shape = None, None
        acc.add(s, sc, 0.2)
    m = acc.compute()
    assert m["O-R"] is None and m["P-R"] is None and m["P-P"] is None  # one class only: undefined, not a number
    s, sc = _grid_sample("bulge", slice(0, 20), rng)
    s.grid_index, s.grid_shape = None, None
    acc.add(s, sc, 0.9)
    m = acc.compute()
    assert m["P-R"] == m["P-R (pt)"] and m["P-R"] > 0.9 and m["P-P"] is None and m["P-P (pt)"] is None


def _results() -> list[ClassResult]:
    return [ClassResult("ring", 7, 5, {"O-R": 0.8, "O-A": 0.9, "P-R": 0.7, "P-P": 0.6, "P-R (pt)": 0.65,
                                       "P-P (pt)": None}, 1.0),
            ClassResult("box", 7, 5, {"O-R": 0.6, "O-A": 0.7, "P-R": 0.9, "P-P": 0.4, "P-R (pt)": 0.75,
                                      "P-P (pt)": 0.5}, 2.0)]


def test_tables_and_means(tmp_path: Path) -> None:
    res = _results()
    mean = mean_metrics(res)
    assert mean["O-R"] == pytest.approx(0.7) and mean["P-P (pt)"] == pytest.approx(0.5)
    md = markdown_table(res)
    assert "| ring | 7 | 5 | 80.0 | 90.0 | 70.0 | 60.0 | 65.0 | - |" in md
    assert "**70.0**" in md and md.count("\n") == 5
    rows = list(csv.reader(csv_table(res).splitlines()))
    assert rows[0][:4] == ["class", "n_samples", "n_anomalous", "O-R"] and rows[-1][0] == "mean"
    assert float(rows[1][3]) == pytest.approx(0.8) and rows[1][8] == ""
    paths = write_tables(tmp_path, res, name="t", title="demo")
    data = json.loads(paths["json"].read_text())
    assert data["mean"]["O-R"] == pytest.approx(0.7) and data["classes"][0]["metrics"]["P-P (pt)"] is None
    assert paths["md"].read_text().startswith("## demo")
    sbs = side_by_side_markdown({"torch": res, "ort": res[:1]})
    assert "O-R torch | O-R ort" in sbs and "| box | 60.0 | - |" in sbs


def test_training_origin_and_class_selection(synthetic_root: Path) -> None:
    info = {"run_config": {"dataset": "synthetic", "category": "ring"}}
    assert training_origin(info) == ("synthetic", "ring")
    carrot = {"bundle_manifest": {"run": {"config": {"dataset": "mvtec3d", "category": "carrot"}}}}
    assert training_origin(carrot) == ("mvtec3d", "carrot")
    classes, excluded = select_classes("one-vs-rest", "synthetic", synthetic_root, info)
    assert excluded == "ring" and "ring" not in classes and len(classes) >= 2
    classes, excluded = select_classes("cross-dataset", "synthetic", synthetic_root, info)
    assert excluded is None and "ring" in classes
    with pytest.raises(Align3DError, match="no class"):
        select_classes("one-vs-rest", "synthetic", synthetic_root, info, categories=["nope"])


def test_run_protocol_outputs(synthetic_root: Path, tmp_path: Path) -> None:
    det, _ = fake_detector(info={"backend": "fake", "run_config": {"dataset": "synthetic", "category": "dome"},
                                 "clip_name": "fake-clip", "clip_weights_id": "random:0", "seeds": {"training": 0}})
    out = tmp_path / "eval"
    outcome = run_protocol(det, "one-vs-rest", "synthetic", synthetic_root, out, categories=["dome", "ring"],
                           batch_size=3, n_examples=1, progress=False)
    assert outcome.excluded == "dome" and [r.category for r in outcome.results] == ["ring"]
    r = outcome.results[0]
    assert r.n_samples >= 3 and 0 < r.n_anomalous < r.n_samples
    for key in ("O-R", "O-A", "P-R", "P-P", "P-R (pt)", "P-P (pt)"):
        assert r.metrics[key] is not None and 0.0 <= r.metrics[key] <= 1.0
    assert {p.name for p in out.iterdir()} >= {"results.md", "results.csv", "results.json", "manifest.json",
                                               "results_contact_sheet.png", "results_examples"}
    assert len(list((out / "results_examples").glob("*.png"))) == 2  # one good + one anomalous
    man = json.loads((out / "manifest.json").read_text())
    assert man["views_preset"] == "mvtec9" and man["renderer"] == "splat" and man["clip_weights_id"] == "random:0"
    assert man["dataset_root"] == str(synthetic_root.resolve()) and man["excluded_training_class"] == "dome"
    assert "numpy" in man["library_versions"] and man["timestamp"]
    assert all(ex.gt_masks is not None for ex in outcome.examples if ex.is_anomalous)
