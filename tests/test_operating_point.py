"""Operating-point figures (eval/operating_point.py) on inputs whose answers are known by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from align3d_rt.eval.operating_point import (
    OperatingPoint,
    RegionHits,
    conformal_false_reject_range,
    conformal_rank,
    object_operating_point,
    operating_markdown,
    region_hits,
)


def test_object_rates_and_f1_by_hand() -> None:
    # good: 0.1 0.2 0.6 (0.6 rejected at t = 0.5); bad: 0.4 0.5 0.9 0.7 (0.4 and 0.5 accepted: strict >)
    op = object_operating_point([0.1, 0.2, 0.6, 0.4, 0.5, 0.9, 0.7], [0, 0, 0, 1, 1, 1, 1], 0.5,
                                target_false_reject=0.05)
    assert (op.n_good, op.n_bad, op.n_false_rejects) == (3, 4, 1)
    assert op.false_reject == pytest.approx(1 / 3)
    assert op.false_accept == pytest.approx(2 / 4)
    # tp = 2, fp = 1, fn = 2: F1 = 4 / (4 + 1 + 2)
    assert op.f1 == pytest.approx(4 / 7)
    assert op.target_false_reject == 0.05 and op.object_threshold == 0.5


def test_object_rates_undefined_shares_are_none() -> None:
    only_good = object_operating_point([0.1, 0.3], [0, 0], 0.2)
    assert only_good.false_accept is None and only_good.false_reject == 0.5
    assert only_good.f1 == 0.0  # one false positive, no true positive: F1 = 0, not undefined
    nothing = object_operating_point([0.1], [0], 0.5)
    assert nothing.f1 is None and nothing.false_reject == 0.0
    with pytest.raises(ValueError):
        object_operating_point([0.1, 0.2], [0], 0.5)


def test_region_hits_by_hand() -> None:
    #            0  1  2  3  4  5  6  7  8
    regions = np.array([1, 1, 0, 2, 0, 0, 3, 3, 0])
    defects = np.array([0, 5, 5, 0, 0, 7, 0, 0, 9])
    hits = region_hits(regions, defects)
    # defects 5, 7, 9; only 5 shares a point (index 1) with a region; regions 1, 2, 3: only 1 touches a defect
    assert hits == RegionHits(n_defects=3, n_covered=1, n_regions=3, n_on_defect=1)
    assert region_hits(np.zeros(4, int), np.zeros(4, int)) == RegionHits()
    total = hits + RegionHits(1, 1, 2, 0)
    assert total == RegionHits(4, 2, 5, 1)
    op = object_operating_point([0.0], [1], 0.5, hits=total)
    assert op.defects_covered == pytest.approx(2 / 4) and op.regions_on_defect == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        region_hits(np.zeros(3, int), np.zeros(4, int))


def test_conformal_range_matches_beta_binomial_simulation() -> None:
    n, alpha, m = 39, 0.05, 60
    k = conformal_rank(n, alpha)
    assert k == 38  # ceil(40 * 0.95)
    lo, hi = conformal_false_reject_range(n, k, m)
    # expectation of the rate is (n+1-k)/(n+1) = 0.05 -> 3 of 60 parts on average, inside the range
    assert lo <= 3 <= hi
    # simulate: calibration sets of n uniform good scores, threshold x_(k), m new good parts
    rng = np.random.default_rng(0)
    cal = np.sort(rng.random((20000, n)), axis=1)[:, k - 1]
    counts = rng.binomial(m, 1.0 - cal)
    inside = np.mean((counts >= lo) & (counts <= hi))
    assert inside >= 0.9 - 0.01
    assert np.mean(counts > hi) <= 0.05 + 0.01
    assert stats.betabinom(m, n + 1 - k, k).mean() == pytest.approx(m * 2 / 40)
    with pytest.raises(ValueError):
        conformal_false_reject_range(5, 6, 10)


def test_operating_point_round_trip_and_table() -> None:
    op = object_operating_point([0.1, 0.9, 0.2], [0, 1, 0], 0.5, target_false_reject=0.05, hits=RegionHits(2, 1, 4, 3))
    op.false_reject_range = (0, 3)
    back = OperatingPoint.from_dict(op.to_dict())
    assert back == op
    md = operating_markdown([("wave", op)])
    row = md.splitlines()[2]
    assert row.startswith("| wave | 2 | 1 | 5.0 | 0.0 (0/2) | 0-3 | 0.0 | 100.0 | 50.0 (1/2) | 75.0 (3/4) |")


def _grid(n: int) -> np.ndarray:
    u, v = np.meshgrid(np.arange(n, dtype=np.float32), np.arange(n, dtype=np.float32))
    return np.stack([u.ravel(), v.ravel(), np.zeros(n * n, np.float32)], 1)


def test_defect_groups_single_linkage_on_the_cloud_spacing() -> None:
    from align3d_rt.eval.operating_point import defect_groups

    pts = _grid(10)                      # spacing h = 1; radius 2.5 * 1
    labels = np.zeros(100, np.uint8)
    labels[[0, 1, 12]] = 1               # (0,0) (1,0) (2,1): linked (distances 1 and sqrt 2)
    labels[[77, 99]] = 1                 # (7,7) and (9,9): 2.83 apart > 2.5: two more groups
    groups = defect_groups(pts, labels, 2.5)
    assert groups[0] == groups[1] == groups[12] > 0
    assert len({groups[0], groups[77], groups[99]}) == 3
    assert np.count_nonzero(groups) == 5
    assert not defect_groups(pts, np.zeros(100, np.uint8), 2.5).any()
    # a larger factor links the two far points (2.83 <= 3.0)
    wide = defect_groups(pts, labels, 3.0)
    assert wide[77] == wide[99]


def test_part_region_hits_against_hand_made_defects() -> None:
    from align3d_rt.eval.calibration import fit_calibration
    from align3d_rt.eval.operating_point import part_region_hits

    pts = _grid(10)
    good = [np.linspace(0.0, 0.5, 100, dtype=np.float32) + 0.001 * i for i in range(19)]
    cal = fit_calibration([0.1 + 0.01 * i for i in range(19)], good, product="p",
                          source={"kind": "bundle", "manifest_sha256": "a" * 64}, min_points=2)
    assert cal.point.threshold == pytest.approx(0.518)   # the largest of the 19 maxima (k = 19)
    fused = np.zeros(100, np.float32)
    fused[[0, 1, 10, 11]] = 0.9           # a region on the defect at the corner
    fused[[55, 56]] = 0.9                 # a region where nothing is labelled
    fused[[99]] = 0.9                     # one hot point: below min_points, no region
    labels = np.zeros(100, np.uint8)
    labels[[0, 1]] = 1                    # defect 1, covered
    labels[[88]] = 1                      # defect 2, (8,8) not linked to (9,9)'s... missed
    hits = part_region_hits(pts, fused, labels, cal)
    assert hits == RegionHits(n_defects=2, n_covered=1, n_regions=2, n_on_defect=1)
    assert part_region_hits(pts, fused, None, cal) == RegionHits(0, 0, 2, 0)


_FAKE_SOURCE = {"kind": "bundle", "manifest_sha256": "b" * 64}


def _fake_eval(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    from infer_eval_support import fake_detector

    from align3d_rt.cli import eval as eval_cli

    det, _ = fake_detector(info={"backend": "fake", "source": "bundle", "bundle_manifest": dict(_FAKE_SOURCE),
                                 "run_config": {"dataset": "synthetic", "category": "dome"}})
    monkeypatch.setattr(eval_cli, "build_detector", lambda args: det)
    return det


def test_eval_cli_with_calibration_reports_the_operating_point(synthetic_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from align3d_rt.artifacts.calibration import save_calibration
    from align3d_rt.cli import main
    from align3d_rt.eval.calibration import fit_calibration

    _fake_eval(monkeypatch)
    # a threshold between the fake encoder's scores: some parts on each side
    cal = fit_calibration([0.0] * 18 + [0.3], [np.array([0.0, 0.2], np.float32)] * 19, product="ring",
                          source=_FAKE_SOURCE)
    cal_path = save_calibration(cal, tmp_path / "cal.json")
    out = tmp_path / "eval"
    rc = main(["eval", "--protocol", "cross-dataset", "--dataset", "synthetic", "--root", str(synthetic_root),
               "--bundle", str(tmp_path), "--out", str(out), "--categories", "ring", "--examples", "0",
               "--calibration", str(cal_path)])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "At the calibrated operating point" in stdout
    data = json.loads((out / "results.json").read_text())
    op = data["classes"][0]["operating"]
    scores = json.loads((out / "results_classes" / "ring.json").read_text())["result"]["operating"]
    assert op == scores
    assert op["n_good"] == 2 and op["n_bad"] >= 1 and op["object_threshold"] == pytest.approx(0.3)
    assert op["false_reject_range"] is not None and op["target_false_reject"] == 0.05
    assert "| ring |" in (out / "results.md").read_text().split("operating point")[1]
    man = json.loads((out / "manifest.json").read_text())
    assert man["calibration"]["calibration_sha256"] == cal.to_dict()["calibration_sha256"]

    # a calibration of another bundle: one line, exit 2
    other = fit_calibration([0.01 * i for i in range(19)], [np.array([0.0, 0.2], np.float32)] * 19, product="ring",
                            source={"kind": "bundle", "manifest_sha256": "c" * 64})
    other_path = save_calibration(other, tmp_path / "other.json")
    rc = main(["eval", "--protocol", "cross-dataset", "--dataset", "synthetic", "--root", str(synthetic_root),
               "--bundle", str(tmp_path), "--out", str(tmp_path / "eval2"), "--categories", "ring",
               "--calibration", str(other_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "calibration is for bundle" in err[0]
    assert not (tmp_path / "eval2" / "results.json").exists()


def test_eval_calibrate_on_too_few_good_parts_is_one_line(synthetic_root, tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from align3d_rt.cli import main

    _fake_eval(monkeypatch)
    rc = main(["eval", "--protocol", "cross-dataset", "--dataset", "synthetic", "--root", str(synthetic_root),
               "--bundle", str(tmp_path), "--out", str(tmp_path / "eval"), "--categories", "ring",
               "--calibrate-on", "train"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "train" in err[0] and "19" in err[0]   # the synthetic root has 2 train parts; conformal at 5 % needs 19
