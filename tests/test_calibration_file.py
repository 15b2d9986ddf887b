"""The calibration file (docs/runtime-spec.md 13.2) and the fitting rules (13.1)."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import beta

from align3d_rt.artifacts.calibration import (
    CALIBRATION_FORMAT,
    CALIBRATION_VERSION,
    Calibration,
    calibration_digest,
    check_source,
    load_calibration,
    run_id,
    save_calibration,
)
from align3d_rt.errors import Align3DError
from align3d_rt.eval.calibration import (
    conformal_rank,
    fit_calibration,
    fit_threshold,
    good_parts_needed,
    pac_rank,
)

BUNDLE_A = {"kind": "bundle", "manifest_sha256": "a" * 64}
BUNDLE_B = {"kind": "bundle", "manifest_sha256": "b" * 64}


def fitted(n: int = 30, seed: int = 0, **kw: Any) -> Calibration:
    rng = np.random.default_rng(seed)
    good = rng.gamma(2.0, 1.0, n)
    parts = [rng.uniform(0, 1, 50).astype(np.float32) for _ in range(n)]
    return fit_calibration(good, parts, product="bracket", source=BUNDLE_A, dataset="mvtec3d", category="cookie", **kw)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    return save_calibration(fitted(), tmp_path / "cal.json")


def one_line_error(path: Path) -> str:
    with pytest.raises(Align3DError) as info:
        load_calibration(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ")
    return msg


def edit(path: Path, change: Callable[[dict], None], reseal: bool) -> None:
    """Change the file's object; ``reseal``: recompute the digest (a valid file with that content)."""
    data = json.loads(path.read_text())
    change(data)
    if reseal:
        data["calibration_sha256"] = calibration_digest(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def test_round_trip(tmp_path: Path) -> None:
    made = fitted()
    saved = save_calibration(made, tmp_path / "cal.json")
    cal = load_calibration(saved)
    assert cal == made  # fit_calibration seals it: the loaded object equals the fitted one
    assert cal.product == "bracket" and cal.n_good == 30 and cal.dataset == "mvtec3d" and cal.category == "cookie"
    assert cal.sha256 == calibration_digest(json.loads(saved.read_text()))
    assert Calibration.from_dict(cal.to_dict()) == cal
    data = json.loads(saved.read_text())
    assert data["format"] == CALIBRATION_FORMAT and data["format_version"] == CALIBRATION_VERSION
    assert set(data) == {"format", "format_version", "product", "created", "software", "source", "scoring", "dataset",
                         "category", "rule", "n_good", "n_bad", "object", "point", "regions", "good_object_scores",
                         "calibration_sha256"}
    assert set(data["object"]) == {"threshold", "lo", "hi", "rank", "false_reject_bound", "false_reject_upper_90"}
    assert set(data["point"]) == {"threshold", "lo", "hi", "rank"}
    assert data["regions"] == {"min_points": 10, "spacing_factor": 2.5}
    assert saved.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"  # indent 2, sorted keys
    assert not list(saved.parent.glob(".*"))  # atomic: no temporary left


def test_save_refuses_existing_unless_overwrite(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(Align3DError, match="exists; pass --overwrite"):
        save_calibration(fitted(seed=1), saved)
    replacement = fitted(seed=1)
    save_calibration(replacement, saved, overwrite=True)
    assert load_calibration(saved) == replacement
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}')
    with pytest.raises(Align3DError, match="not an align3d_rt.calibration file; never replaced"):
        save_calibration(fitted(), other, overwrite=True)
    assert other.read_text() == '{"mine": 1}'


REFUSALS = [
    # (name, edit or None, reseal, expected message part)
    ("format", lambda d: d.update(format="align3d_rt.bundle"), True, "not an align3d_rt.calibration file"),
    ("version", lambda d: d.update(format_version=2), True, "calibration format version 2, this align3d_rt reads "
                                                           "version 1; upgrade align3d_rt, or re-run"),
    ("edited", lambda d: d["object"].update(threshold=d["object"]["threshold"] * 1.01), False,
     "calibration checksum mismatch (the file was edited or is corrupt); re-run align3d-rt calibrate"),
    ("nan", lambda d: d["point"].update(threshold=float("nan")), False, "calibration holds NaN or infinite numbers"),
    ("missing", lambda d: d["object"].pop("hi"), True, "object.hi is missing"),
    ("string", lambda d: d["point"].update(lo="0.1"), True, "point.lo is not a number"),
    ("inverted", lambda d: d["object"].update(lo=d["object"]["hi"], hi=d["object"]["lo"]), True,
     "inverted or degenerate object thresholds"),
    ("outside", lambda d: d["point"].update(threshold=d["point"]["hi"] + 1.0), True,
     "inverted or degenerate point thresholds"),
    ("min_points", lambda d: d["regions"].update(min_points=0), True, "regions.min_points must be an integer >= 1"),
    ("spacing", lambda d: d["regions"].update(spacing_factor=-1.0), True, "regions.spacing_factor must be"),
    ("product", lambda d: d.update(product=""), True, "bad calibration field 'product'"),
]


@pytest.mark.parametrize("name,change,reseal,expected", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_one_line(saved: Path, name: str, change: Callable[[dict], None], reseal: bool,
                           expected: str) -> None:
    edit(saved, change, reseal)
    assert expected in one_line_error(saved)


def test_unreadable_and_not_json(tmp_path: Path) -> None:
    assert "unreadable calibration (FileNotFoundError" in one_line_error(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    assert "unreadable calibration (JSONDecodeError" in one_line_error(bad)
    assert "not an align3d_rt.calibration file" in one_line_error(_write(tmp_path / "list.json", [1, 2]))


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_refusal_order(saved: Path) -> None:
    """Checks run in the spec's order: version before digest, digest before the threshold checks."""
    edit(saved, lambda d: d.update(format_version=0, product="edited"), reseal=False)
    assert "format version 0" in one_line_error(saved)
    edit(saved, lambda d: d.update(format_version=1), reseal=False)
    edit(saved, lambda d: d["object"].update(lo=5.0, hi=1.0), reseal=False)
    assert "checksum mismatch" in one_line_error(saved)
    edit(saved, lambda d: d["regions"].update(min_points=0), reseal=True)
    assert "inverted or degenerate object" in one_line_error(saved)  # thresholds before regions


def test_other_source_refused() -> None:
    cal = fitted()
    check_source(cal, dict(BUNDLE_A, path="/elsewhere"), "cal.json")  # the path is informative only
    with pytest.raises(Align3DError) as info:
        check_source(cal, BUNDLE_B, "cal.json")
    assert str(info.value).startswith(f"cal.json: calibration is for bundle {'a' * 64}, this bundle is {'b' * 64}")
    with pytest.raises(Align3DError, match=f"calibration is for bundle {'a' * 64}, this run is {'c' * 64}"):
        check_source(cal, {"kind": "run", "run_id": "c" * 64}, "cal.json")


def test_run_id_follows_weights(tmp_path: Path) -> None:
    from align3d_rt.artifacts.run_dir import FINAL_FILES

    for name in FINAL_FILES:
        (tmp_path / name).write_bytes(name.encode())
    first = run_id(tmp_path, "random:0")
    assert first == run_id(tmp_path, "random:0") and len(first) == 64
    assert run_id(tmp_path, "random:1") != first
    (tmp_path / FINAL_FILES[0]).write_bytes(b"other weights")
    assert run_id(tmp_path, "random:0") != first


# ---- fitting rules ----------------------------------------------------------------------------------
def test_conformal_rank_formula() -> None:
    x = np.arange(1.0, 41.0)  # x_(k) = k
    assert conformal_rank(19, 0.05) == 19 and conformal_rank(20, 0.05) == 20 and conformal_rank(39, 0.05) == 38
    for n, alpha in ((19, 0.05), (20, 0.05), (39, 0.05), (40, 0.1), (25, 0.2)):
        ts = fit_threshold(x[:n], rule="conformal", target_false_reject=alpha)
        k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
        assert ts.rank == k and ts.threshold == float(k)
        assert ts.extras["false_reject_bound"] == pytest.approx((n + 1 - k) / (n + 1))
        assert ts.extras["false_reject_bound"] <= alpha
        assert ts.extras["false_reject_upper_90"] == pytest.approx(beta.ppf(0.9, n + 1 - k, k))
        assert (ts.lo, ts.hi) == (1.0, float(n))



@pytest.mark.parametrize("n, alpha", [(19, 0.05), (20, 0.05), (39, 0.05), (40, 0.1), (25, 0.2)])
def test_conformal_rejects_exactly_n_plus_1_minus_k_of_n_plus_1_exchangeable_parts(n: int, alpha: float) -> None:
    """The guarantee without sampling: of n+1 distinct scores, hold each out in turn, calibrate on the
    other n and decide the held-out one; exactly n+1-k are rejected (score > x_(k)), so a part
    exchangeable with the calibration parts is rejected with probability (n+1-k)/(n+1). Ties only
    lower the count."""
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    rng = np.random.default_rng(n)
    for scores, exact in ((rng.lognormal(0.0, 0.6, n + 1), True), (rng.integers(0, 4, n + 1).astype(float), False)):
        rejected = sum(bool(scores[i] > fit_threshold(np.delete(scores, i), target_false_reject=alpha).threshold)
                       for i in range(n + 1))
        assert rejected == n + 1 - k if exact else rejected <= n + 1 - k


def test_good_parts_needed_table() -> None:
    assert [good_parts_needed("conformal", a) for a in (0.1, 0.05, 0.01)] == [9, 19, 99]
    assert [good_parts_needed("pac", a, 0.9) for a in (0.1, 0.05, 0.01)] == [22, 45, 230]
    for a, n in ((0.05, 45), (0.1, 22)):
        assert n >= math.log(0.1) / math.log(1 - a) > n - 1


@pytest.mark.parametrize("rule,alpha,conf,needed", [("conformal", 0.05, None, 19), ("conformal", 0.01, None, 99),
                                                    ("pac", 0.05, 0.9, 45)])
def test_too_few_good_parts_names_the_number(rule: str, alpha: float, conf: float | None, needed: int) -> None:
    x = np.linspace(0, 1, needed - 1)
    with pytest.raises(Align3DError) as info:
        fit_threshold(x, rule=rule, target_false_reject=alpha, confidence=conf)
    assert f"{needed - 1} good part(s) scored" in str(info.value)
    assert f"needs at least {needed} good parts" in str(info.value) and "\n" not in str(info.value)
    assert fit_threshold(np.linspace(0, 1, needed), rule=rule, target_false_reject=alpha, confidence=conf).rank


def test_pac_rank_is_smallest_fitting_k() -> None:
    for n, alpha, c in ((45, 0.05, 0.9), (100, 0.05, 0.9), (200, 0.1, 0.95)):
        k = pac_rank(n, alpha, c)
        assert k is not None
        assert beta.sf(alpha, n + 1 - k, k) <= 1 - c
        assert k == 1 or beta.sf(alpha, n + 2 - k, k - 1) > 1 - c
    assert pac_rank(44, 0.05, 0.9) is None
    ts = fit_threshold(np.arange(1.0, 101.0), rule="pac", target_false_reject=0.05, confidence=0.9)
    assert ts.threshold == float(pac_rank(100, 0.05, 0.9)) and ts.rank == pac_rank(100, 0.05, 0.9)


def test_f1_rule_known_numbers_and_ties() -> None:
    # t=2: tp 3, fp 1 -> F1 6/7, the best (t=3: 4/5, t=1: 6/8)
    assert fit_threshold([0, 1, 2, 3], [2.5, 4, 5], rule="f1").threshold == 2.0
    rng = np.random.default_rng(4)
    for _ in range(50):
        good = rng.integers(0, 8, rng.integers(2, 10)).astype(float)
        bad = rng.integers(3, 12, rng.integers(1, 6)).astype(float)
        if good.min() == good.max():
            continue
        t = fit_threshold(good, bad, rule="f1").threshold

        def f1(th: float, good: np.ndarray = good, bad: np.ndarray = bad) -> float:
            tp, fp = (bad > th).sum(), (good > th).sum()
            return 2 * tp / (2 * tp + fp + (bad <= th).sum()) if tp else 0.0

        cands = sorted(set(good) | set(bad))
        best = max(f1(c) for c in cands)
        assert f1(t) == best and t == min(c for c in cands if f1(c) == best)  # ties: the smallest


def test_false_accept_rule_known_numbers() -> None:
    good, bad = [0, 1, 2, 3], [1.5, 2.5, 4, 5]
    # floor(0.25 * 4) = 1 bad part may be accepted: the largest candidate with #{bad <= t} <= 1 is 2
    ts = fit_threshold(good, bad, rule="false-accept", target_false_accept=0.25)
    assert ts.threshold == 2.0 and ts.rank is None and ts.extras["false_reject_bound"] is None
    assert fit_threshold(good, bad, rule="false-accept", target_false_accept=0.0).threshold == 1.0
    # a threshold above every good part widens hi to it (normalisation stays defined)
    wide = fit_threshold(good, [10, 11, 12], rule="false-accept", target_false_accept=0.34)
    assert wide.threshold == 10.0 and wide.hi == 10.0 and wide.lo == 0.0
    with pytest.raises(Align3DError, match="needs --target-false-accept"):
        fit_threshold(good, bad, rule="false-accept")
    with pytest.raises(Align3DError, match="needs scored bad parts"):
        fit_threshold(good, None, rule="f1")


def test_fit_calibration_point_threshold_and_refusals() -> None:
    cal = fitted(n=30)
    assert cal.object.rank == conformal_rank(30, 0.05) == cal.point.rank
    assert cal.rule == {"name": "conformal", "target_false_reject": 0.05, "confidence": None,
                        "target_false_accept": None}
    rng = np.random.default_rng(0)
    rng.gamma(2.0, 1.0, 30)
    parts = [rng.uniform(0, 1, 50).astype(np.float32) for _ in range(30)]
    maxima = np.sort([float(p.max()) for p in parts])
    assert cal.point.threshold == maxima[cal.point.rank - 1]
    assert cal.point.lo == min(float(p.min()) for p in parts) and cal.point.hi == maxima[-1]
    with pytest.raises(Align3DError, match="not finite"):
        fit_calibration([1.0, float("nan")] * 10, [np.ones(3)] * 20, product="p", source=BUNDLE_A)
    with pytest.raises(Align3DError, match="--min-region-points 0"):
        fitted(min_points=0)
    with pytest.raises(Align3DError, match="same score"):
        fit_calibration([1.0] * 20, [np.arange(3.0)] * 20, product="p", source=BUNDLE_A)


def test_conformal_false_reject_rate_statistically(record_figure: Callable[[str], None]) -> None:
    """Calibrate on n = 50 good scores, measure the false-reject rate on 20000 new good draws, many
    times: the mean is the conformal (n+1-k)/(n+1) <= α, and the true rate exceeds the recorded 90 %
    upper quantile in about 10 % of the calibration sets."""
    rng = np.random.default_rng(2026)
    n, alpha, reps, draws = 50, 0.05, 400, 20000
    rates, uppers = [], []
    for _ in range(reps):
        ts = fit_threshold(rng.lognormal(0.0, 0.6, n), rule="conformal", target_false_reject=alpha)
        rates.append(float((rng.lognormal(0.0, 0.6, draws) > ts.threshold).mean()))
        uppers.append(ts.extras["false_reject_upper_90"])
    k = conformal_rank(n, alpha)
    bound = (n + 1 - k) / (n + 1)
    mean = float(np.mean(rates))
    se = float(np.sqrt(beta.var(n + 1 - k, k) / reps))
    record_figure(f"conformal n={n} target α={alpha}: bound {bound:.4f}, measured mean false-reject {mean:.4f} "
                  f"over {reps} calibration sets x {draws} new good parts")
    assert mean <= alpha
    assert abs(mean - bound) < 4 * se + 0.002
    over = float(np.mean(np.array(rates) > np.array(uppers)))
    assert 0.05 < over < 0.16


def test_f1_calibration_needs_the_point_thresholds_good_parts() -> None:
    with pytest.raises(Align3DError, match=r"10 good part\(s\) scored; --rule f1 at --target-false-reject 0.05 "
                                           r"needs at least 19 good parts"):
        fit_calibration(np.arange(10.0), [np.arange(3.0)] * 10, product="p", source=BUNDLE_A, rule="f1",
                        bad_object_scores=[20.0])
    cal = fit_calibration(np.arange(19.0), [np.arange(3.0) + i for i in range(19)], product="p", source=BUNDLE_A,
                          rule="f1", bad_object_scores=[20.0, 30.0])
    assert cal.object.threshold == 18.0 and cal.point.rank == 19


def test_modules_import_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; import align3d_rt.artifacts.calibration, "
            "align3d_rt.runtime.decisions, align3d_rt.eval.calibration, align3d_rt.cli.calibrate")
    subprocess.run([sys.executable, "-c", code], check=True)
