"""``align3d-rt calibrate`` on a tiny-CLIP run over generated good parts, then ``infer --calibration``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from infer_eval_support import bump_cloud, shared_tiny_run

from align3d_rt.artifacts.calibration import calibration_digest, load_calibration, save_calibration
from align3d_rt.cli import main
from align3d_rt.eval.calibration import fit_calibration
from align3d_rt.runtime.decisions import normalize

ALPHA = "0.2"  # conformal at 0.2 needs 4 good parts (keeps the test fast)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for i in range(5):
        np.save(folder / f"part{i}.npy", bump_cloud(16, seed=10 + i).points)
    return folder


@pytest.fixture(scope="module")
def calibrated(tiny_run: Path, good_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One calibration over the 5 good parts plus one unreadable file (listed, the others used)."""
    work = tmp_path_factory.mktemp("cal")
    broken = work / "broken.npy"
    np.save(broken, np.ones((7, 2), np.float32))
    out = work / "widget.json"
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as std:
        rc = main(["calibrate", "--run", str(tiny_run), "--good", str(good_folder), str(broken),
                   "--product", "widget", "--target-false-reject", ALPHA, "--out", str(out)])
    assert rc == 1, err.getvalue()  # one file failed, the calibration is written
    return out, err.getvalue() + "\n" + std.getvalue()


def test_calibrate_writes_a_calibration(calibrated: tuple[Path, str], tiny_run: Path) -> None:
    out, text = calibrated
    skipped = [ln for ln in text.splitlines() if "skipped good part" in ln]
    assert len(skipped) == 1 and "broken.npy" in skipped[0] and "(N,3)" in skipped[0]
    cal = load_calibration(out)
    assert cal.product == "widget" and cal.n_good == 5 and cal.n_bad == 0 and cal.scoring == "default"
    assert cal.rule["name"] == "conformal" and cal.rule["target_false_reject"] == 0.2
    assert cal.object.rank == 5 and cal.object.threshold == max(cal.good_object_scores)  # ceil(6 * 0.8) = 5
    assert cal.source["kind"] == "run" and len(cal.source["run_id"]) == 64
    assert "rule conformal" in text and "guarantee:" in text and str(out) in text


def test_infer_with_calibration_writes_decisions(calibrated: tuple[Path, str], tiny_run: Path,
                                                  tmp_path: Path) -> None:
    fitted_path, _ = calibrated
    # also a copy whose point threshold sits low in the good points' range, so regions are certain
    low = load_calibration(fitted_path).to_dict()
    low["point"]["threshold"] = low["point"]["lo"] + 0.3 * (low["point"]["hi"] - low["point"]["lo"])
    low["calibration_sha256"] = calibration_digest(low)
    low_path = tmp_path / "low.json"
    low_path.write_text(json.dumps(low))
    for cal_path in (fitted_path, low_path):
        _infer_and_check(cal_path, tiny_run, tmp_path / cal_path.stem)
    summary = json.loads((tmp_path / "low" / "out" / "scores.json").read_text())
    assert sum(e["num_regions"] for e in summary["samples"].values()) >= 1


def _infer_and_check(cal_path: Path, tiny_run: Path, tmp_path: Path) -> None:
    cal = load_calibration(cal_path)
    parts = tmp_path / "parts"
    parts.mkdir(parents=True)
    np.save(parts / "same.npy", bump_cloud(16, seed=10).points)  # a calibration part: ok
    odd = bump_cloud(24, seed=99).points.copy()
    odd[:150, 2] += 0.01  # a raised corner
    np.save(parts / "odd.npy", odd)
    out = tmp_path / "out"
    rc = main(["infer", str(parts), "--run", str(tiny_run), "--calibration", str(cal_path), "--out", str(out),
               "--no-ply", "--no-png"])
    assert rc == 0
    summary = json.loads((out / "scores.json").read_text())
    assert summary["calibration"] == {"product": "widget", "calibration_sha256": cal.sha256, "rule": cal.rule,
                                      "object_threshold": cal.object.threshold,
                                      "point_threshold": cal.point.threshold, "file": str(cal_path)}
    for key, entry in summary["samples"].items():
        assert {"decision", "object_score_normalized", "regions", "num_regions"} <= set(entry)
        assert entry["decision"] == ("reject" if entry["object_score"] > cal.object.threshold else "ok")
        assert entry["object_score_normalized"] == pytest.approx(
            normalize(entry["object_score"], cal.object.threshold, cal.object.lo, cal.object.hi))
        fused = np.load(out / f"{key}.scores.npy")[:, 2]
        norm = np.load(out / entry["outputs"]["normalized"])
        labels = np.load(out / entry["outputs"]["regions"])
        assert norm.dtype == np.dtype("<f4") and labels.dtype == np.dtype("<i4")
        assert norm.shape == labels.shape == fused.shape
        np.testing.assert_array_equal(norm, normalize(fused, cal.point.threshold, cal.point.lo,
                                                      cal.point.hi).astype(np.float32))
        assert entry["num_regions"] == len(entry["regions"]) == int(labels.max())
        for region in entry["regions"]:
            members = labels == region["id"]
            assert members.sum() == region["num_points"] >= cal.min_points
            assert (fused[members] > cal.point.threshold).all()
    assert summary["samples"]["parts__same"]["decision"] == "ok"
    # without --calibration none of the keys appear
    plain = tmp_path / "plain"
    assert main(["infer", str(parts / "same.npy"), "--run", str(tiny_run), "--out", str(plain), "--no-ply",
                 "--no-png"]) == 0
    summary = json.loads((plain / "scores.json").read_text())
    assert "calibration" not in summary and "decision" not in summary["samples"]["same"]
    assert not list(plain.glob("*.normalized.npy")) and not list(plain.glob("*.regions.npy"))


def test_detector_api_decision(calibrated: tuple[Path, str], tiny_run: Path) -> None:
    from align3d_rt.runtime.detector import Detector

    cal_path, _ = calibrated
    with Detector.from_run(tiny_run, calibration=cal_path) as det:
        res = det.score_one(bump_cloud(16, seed=11), keep_render=False)
    assert res.decision is not None and res.decision.decision in ("ok", "reject")
    assert res.decision.normalized.shape == (256,) and res.decision.regions.labels.shape == (256,)


def test_calibration_for_another_source_refused(calibrated: tuple[Path, str], tiny_run: Path, good_folder: Path,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cal_path, _ = calibrated
    part = str(good_folder / "part0.npy")
    cal = load_calibration(cal_path)
    other = fit_calibration(cal.good_object_scores, [np.linspace(0, 1, 10)] * cal.n_good, product="widget",
                            source={"kind": "bundle", "manifest_sha256": "e" * 64}, rule="conformal",
                            target_false_reject=0.2)
    other_path = save_calibration(other, tmp_path / "other.json")
    out = tmp_path / "out"
    rc = main(["infer", part, "--run", str(tiny_run), "--calibration", str(other_path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"{other_path}: calibration is for bundle {'e' * 64}, this run is {cal.source['run_id']}" in err[0]
    assert not out.exists()
    # a conflicting --dataset, and another scoring mode: refused before any output
    for extra, expected in ((["--dataset", "mvtec3d"], "--dataset ''"),
                            (["--scoring", "reference"], "made with default scoring")):
        rc = main(["infer", part, "--run", str(tiny_run), "--calibration", str(cal_path), "--out", str(out),
                   *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and expected in err[0], err
        assert not out.exists()


def test_too_few_good_parts_one_line_nothing_written(tiny_run: Path, good_folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cal.json"
    three = [str(good_folder / f"part{i}.npy") for i in range(3)]
    rc = main(["calibrate", "--run", str(tiny_run), "--good", *three, "--product", "w", "--target-false-reject",
               ALPHA, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "needs at least 4 good parts" in err[0] and "3 good part" in err[0]
    assert not out.exists()
    # 4 files, one unreadable: listed, then too few scored parts -> the same one-line refusal
    broken = tmp_path / "broken.ply"
    broken.write_text("not a ply")
    rc = main(["calibrate", "--run", str(tiny_run), "--good", *three, str(broken), "--product", "w",
               "--target-false-reject", ALPHA, "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in lines if "error:" in ln]
    assert rc == 2 and len(errors) == 1 and "3 good part(s) scored" in errors[0] and "needs at least 4" in errors[0]
    assert any("skipped" in ln and "broken.ply" in ln for ln in lines)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken.ply"]


def test_out_is_never_an_unrelated_file(tiny_run: Path, good_folder: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "notes.json"
    out.write_text("my notes")
    for extra in ([], ["--overwrite"]):
        rc = main(["calibrate", "--run", str(tiny_run), "--good", str(good_folder), "--product", "w",
                   "--target-false-reject", ALPHA, "--out", str(out), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and str(out) in err[0]
    assert out.read_text() == "my notes"


def test_f1_rule_with_bad_parts(tiny_run: Path, good_folder: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(2):
        cloud = bump_cloud(16, seed=40 + i).points.copy()
        cloud[:60, 2] += 0.02
        np.save(bad / f"b{i}.npy", cloud)
    out = tmp_path / "f1.json"
    rc = main(["calibrate", "--run", str(tiny_run), "--good", str(good_folder), "--bad", str(bad), "--rule", "f1",
               "--product", "w", "--target-false-reject", ALPHA, "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    cal = load_calibration(out)
    assert cal.rule["name"] == "f1" and cal.n_bad == 2 and cal.object.rank is None
    assert "bad parts rejected at this threshold" in text and "no false-reject guarantee" in text
    # settings that cannot be fitted are refused before any scoring
    for extra, expected in ((["--rule", "false-accept", "--bad", str(bad)], "needs --target-false-accept"),
                            (["--rule", "f1"], "needs scored bad parts"),
                            (["--confidence", "0.9"], "--confidence: only with --rule pac"),
                            (["--min-region-points", "0"], "--min-region-points 0")):
        rc = main(["calibrate", "--run", str(tiny_run), "--good", str(good_folder), "--product", "w",
                   "--target-false-reject", ALPHA, "--out", str(tmp_path / "x.json"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "x.json").exists()


def test_bundle_calibration_is_tied_to_its_manifest(calibrated: tuple[Path, str], tiny_run: Path,
                                                    good_folder: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """calibrate --bundle records the manifest_sha256; infer with that bundle decides, a run's calibration
    is refused there, and the bundle's calibration is refused by another bundle."""
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.export.onnx_export import export_bundle

    bundle = export_bundle(tiny_run, tmp_path / "bundle", precision="fp32")
    out = tmp_path / "b.json"
    rc = main(["calibrate", "--bundle", str(bundle), "--good", str(good_folder), "--product", "w",
               "--target-false-reject", ALPHA, "--out", str(out)])
    capsys.readouterr()
    assert rc == 0
    cal = load_calibration(out)
    digest = load_bundle(bundle).manifest["manifest_sha256"]
    assert cal.source == {"kind": "bundle", "manifest_sha256": digest, "path": str(bundle.resolve())}
    part = str(good_folder / "part1.npy")
    rc = main(["infer", part, "--bundle", str(bundle), "--calibration", str(out), "--out", str(tmp_path / "o"),
               "--no-ply", "--no-png"])
    capsys.readouterr()
    assert rc == 0
    entry = json.loads((tmp_path / "o" / "scores.json").read_text())["samples"]["part1"]
    assert entry["decision"] in ("ok", "reject") and "num_regions" in entry

    run_cal, _ = calibrated
    rc = main(["infer", part, "--bundle", str(bundle), "--calibration", str(run_cal), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"calibration is for run {load_calibration(run_cal).source['run_id']}, this bundle is {digest}" in err[0]

    import shutil

    from align3d_rt.artifacts.bundle import write_manifest

    other = tmp_path / "other"  # the same files under another (valid) manifest: another manifest_sha256
    shutil.copytree(bundle, other)
    write_manifest(other, dict(load_bundle(other).manifest, note="re-exported"))
    rc = main(["infer", part, "--bundle", str(other), "--calibration", str(out), "--out", str(tmp_path / "o3")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"calibration is for bundle {digest}, this bundle is" in err[0]
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()

    # the line-side install (no scipy) refuses --calibration in one line, before any output
    from blocking import run_blocked

    proc = run_blocked("from align3d_rt.cli import main\nsys.exit(main(sys.argv[1:]))", "scipy", "torch",
                       args=("infer", part, "--bundle", str(bundle), "--calibration", str(out), "--out",
                             str(tmp_path / "o4"), "--no-ply", "--no-png"))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "decisions need scipy" in err[0], proc.stderr[-2000:]
    assert not (tmp_path / "o4").exists()


def test_infer_calibration_html_page_carries_the_decision(calibrated: tuple[Path, str], tiny_run: Path,
                                                           tmp_path: Path) -> None:
    """End to end: calibrate -> infer --calibration --html; each page holds the part's decision, its
    normalised point scores and region labels exactly as written beside it, and index.html lists
    the rejects first."""
    import re

    from result_page_support import decode, embedded_data

    fitted, _ = calibrated
    low = load_calibration(fitted).to_dict()  # a low point threshold, so at least one part has regions
    low["point"]["threshold"] = low["point"]["lo"] + 0.3 * (low["point"]["hi"] - low["point"]["lo"])
    # parts p0, p1 are the calibration parts seeds 10, 11: the lower of their scores as the object
    # threshold makes that one ok (not strictly above) and the other a reject
    low["object"]["threshold"] = min(low["good_object_scores"][:2])
    low["calibration_sha256"] = calibration_digest(low)
    cal_path = tmp_path / "low.json"
    cal_path.write_text(json.dumps(low))
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, seed in enumerate((10, 11, 99)):
        np.save(parts / f"p{i}.npy", bump_cloud(16, seed=seed).points)
    out = tmp_path / "out"
    assert main(["infer", str(parts), "--run", str(tiny_run), "--calibration", str(cal_path), "--out", str(out),
                 "--html", "--no-ply", "--no-png"]) == 0
    summary = json.loads((out / "scores.json").read_text())
    assert sum(e["num_regions"] for e in summary["samples"].values()) >= 1
    for entry in summary["samples"].values():
        data = embedded_data((out / entry["outputs"]["html"]).read_text(encoding="utf-8"))
        assert data["part"]["decision"] == entry["decision"]
        assert data["part"]["regions"] == entry["regions"]
        np.testing.assert_array_equal(decode(data["cloud"]["scores"], "<f4"),
                                      np.load(out / entry["outputs"]["normalized"]))
        np.testing.assert_array_equal(decode(data["cloud"]["labels"], "<i4"),
                                      np.load(out / entry["outputs"]["regions"]))
    index = (out / "index.html").read_text(encoding="utf-8")
    order = [m for m in re.findall(r'href="([^"]+\.html)"', index)]
    decisions = [summary["samples"][h[:-5]]["decision"] for h in order]
    assert decisions == sorted(decisions, key=lambda d: d != "reject")
    assert {"ok", "reject"} == set(decisions)
