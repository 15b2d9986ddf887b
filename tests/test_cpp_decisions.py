"""C++ decisions (docs/runtime-spec.md 13.2-13.5): `align3d-inspect --calibration` against Python's
`align3d-rt infer --calibration` on the same fp32 bundle, calibration files and clouds (two layouts:
unorganized .npy/.ply + an organized MVTec-style .tiff with no dataset, and Real3D .pcd files resampled
to 112,896 points), and the refusals of a foreign or edited calibration."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpp_build

pytest.importorskip("openvino")
FIELD_TOL = 1e-5  # region fields and normalised scores, C++ vs Python (spec 13)
GEOMETRY = ("centroid", "bbox_min", "bbox_max", "extent", "area")
SCORES = ("max_score", "mean_score", "max_score_normalized")

if cpp_build.missing_tools():
    pytest.skip(f"C++ toolchain missing ({', '.join(cpp_build.missing_tools())}); run scripts/setup.sh",
                allow_module_level=True)


@pytest.fixture(scope="module")
def build_dir() -> Path:
    return cpp_build.build("cpp")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cpp_build.openvino_fp32_bundle(tmp_path_factory.mktemp("cpp_dec_bundle"))


def _bumpy_sphere(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    bump = 1.0 + 0.15 * np.exp(-np.sum((p - [0.6, 0.0, 0.8]) ** 2, axis=1) / 0.05)
    return (0.05 * p * bump[:, None]).astype(np.float32)


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, list[Path]]]:
    """Two sets, each scored with one calibration: (dataset, files)."""
    import open3d as o3d
    import tifffile

    d = tmp_path_factory.mktemp("cpp_dec_clouds")
    np.save(d / "sphere.npy", _bumpy_sphere(5000, 1))
    box = (np.random.default_rng(2).uniform(-0.03, 0.03, size=(4000, 3)) * [1.0, 0.6, 0.3]).astype(np.float32)
    def pcd(pts: np.ndarray) -> Any:
        return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))

    o3d.io.write_point_cloud(str(d / "box.ply"), pcd(box))
    h, w = 180, 150
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (xx - w / 2) * 4e-4, (yy - h / 2) * 4e-4
    r2 = (x * x + y * y) / 0.025**2
    z = 0.4 - 0.02 * np.sqrt(np.clip(1 - r2, 0, None)) - 0.002 * np.exp(-((x - 0.01) ** 2 + y**2) / 2e-5)
    grid = np.stack([x, y, z], -1).astype(np.float32)
    grid[r2 >= 1] = 0.0
    tifffile.imwrite(d / "dome.tiff", grid)
    real3d = []
    for i, seed in enumerate((3, 4)):
        path = d / f"part{i}.pcd"  # one ascii, one binary
        o3d.io.write_point_cloud(str(path), pcd(_bumpy_sphere(20000, seed)), write_ascii=(i == 0))
        real3d.append(path)
    return {"loose": ("", [d / "sphere.npy", d / "box.ply", d / "dome.tiff"]), "real3d": ("real3d", real3d)}


def _inspect(build_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(build_dir / "cpp" / "align3d-inspect"), *args], capture_output=True, text=True,
                          timeout=600)


def _largest_gap_midpoint(values: np.ndarray, lo_q: float, hi_q: float) -> tuple[float, float]:
    """Midpoint and width of the largest gap between sorted distinct values inside [lo_q, hi_q] quantiles."""
    v = np.unique(values.astype(np.float64))
    a, b = np.quantile(v, [lo_q, hi_q])
    inside = v[(v >= a) & (v <= b)]
    gaps = np.diff(inside)
    k = int(np.argmax(gaps))
    return float(0.5 * (inside[k] + inside[k + 1])), float(gaps[k])


def _calibration(bundle: Path, raw: Path, keys: list[str], dataset: str, out: Path) -> tuple[Path, float, float]:
    """A calibration whose thresholds sit in gaps of the C++ scores of these parts (so decisions and hot
    points cannot flip between implementations); returns it with the two gaps' widths."""
    from align3d_rt.artifacts.calibration import Calibration, ThresholdSet, bundle_source, save_calibration

    samples = json.loads((raw / "scores.json").read_text())["samples"]
    objects = np.array([samples[k]["object_score"] for k in keys])
    fused = np.concatenate([np.load(raw / f"{k}.scores.npy")[:, 2] for k in keys])
    t_obj, obj_gap = _largest_gap_midpoint(objects, 0.0, 1.0)
    t_pt, pt_gap = _largest_gap_midpoint(fused, 0.9, 0.95)
    manifest = json.loads((bundle / "manifest.json").read_text())
    cal = Calibration(
        product="widget", source=bundle_source(manifest, bundle), scoring="default", dataset=dataset, category="",
        rule={"name": "conformal", "target_false_reject": 0.05, "confidence": None, "target_false_accept": None},
        n_good=len(keys), n_bad=0,
        object=ThresholdSet(t_obj, float(objects.min()) - 0.05, float(objects.max()) + 0.05, None, {}),
        point=ThresholdSet(t_pt, float(fused.min()), float(fused.max()), None, {}),
        min_points=5, spacing_factor=2.5, good_object_scores=tuple(float(x) for x in objects))
    return save_calibration(cal, out), obj_gap, pt_gap


def _region_sets(labels: np.ndarray) -> dict[int, tuple[int, ...]]:
    return {int(r): tuple(np.flatnonzero(labels == r)) for r in np.unique(labels) if r}


def _assert_regions_close(cpp: list[dict[str, Any]], py: list[dict[str, Any]], tol: float, where: str) -> None:
    assert len(cpp) == len(py), where
    for c, p in zip(cpp, py, strict=True):
        assert set(c) == set(p), (where, set(c) ^ set(p))
        assert (c["id"], c["num_points"], c["seed_index"]) == (p["id"], p["num_points"], p["seed_index"]), where
        for name in GEOMETRY + SCORES:
            assert np.allclose(c[name], p[name], rtol=0, atol=tol), (where, name, c[name], p[name])


def test_decisions_match_python(build_dir: Path, bundle: Path, clouds: dict[str, tuple[str, list[Path]]],
                                tmp_path: Path) -> None:
    from align3d_rt.artifacts.calibration import load_calibration
    from align3d_rt.cli import main
    from align3d_rt.runtime.decisions import decide

    seen = {"ok": 0, "reject": 0, "regions": 0}
    for name, (dataset, files) in clouds.items():
        keys = [f.stem for f in files]
        raw = tmp_path / f"{name}_raw"
        args = [str(bundle), *map(str, files), "--out", str(raw), "--precision-hint", "f32"] + (
            ["--dataset", dataset] if dataset else [])
        proc = _inspect(build_dir, *args)
        assert proc.returncode == 0, proc.stderr
        cal_path, obj_gap, pt_gap = _calibration(bundle, raw, keys, dataset, tmp_path / f"{name}.calibration.json")
        cal = load_calibration(cal_path)
        # no --dataset on either side: the calibration's dataset is the default
        proc = _inspect(build_dir, str(bundle), *map(str, files), "--calibration", str(cal_path), "--out",
                        str(tmp_path / f"{name}_cpp"), "--precision-hint", "f32")  # bit-exact with Python's f32
        assert proc.returncode == 0, proc.stderr
        assert main(["infer", *map(str, files), "--bundle", str(bundle), "--backend", "openvino", "--precision-hint",
                     "f32", "--calibration", str(cal_path), "--out", str(tmp_path / f"{name}_py"), "--no-ply",
                     "--no-png"]) == 0
        cpp_json = json.loads((tmp_path / f"{name}_cpp" / "scores.json").read_text())
        py_json = json.loads((tmp_path / f"{name}_py" / "scores.json").read_text())
        assert cpp_json["calibration"] == py_json["calibration"]
        assert cpp_json["calibration"]["calibration_sha256"] == cal.sha256
        assert cpp_json["inspector"]["dataset"] == dataset
        for key in keys:
            c_dir, p_dir = tmp_path / f"{name}_cpp", tmp_path / f"{name}_py"
            c, p = cpp_json["samples"][key], py_json["samples"][key]
            points = np.load(c_dir / f"{key}.points.npy")
            np.testing.assert_array_equal(points, np.load(p_dir / f"{key}.points.npy"), err_msg=key)
            c_fused, p_fused = np.load(c_dir / f"{key}.scores.npy")[:, 2], np.load(p_dir / f"{key}.scores.npy")[:, 2]
            # the premise of an exact comparison: the scores differ by less than half of each gap
            assert np.abs(c_fused - p_fused).max() < pt_gap / 2, (key, np.abs(c_fused - p_fused).max(), pt_gap)
            assert abs(c["object_score"] - p["object_score"]) < obj_gap / 2, key
            assert c["decision"] == p["decision"] and c["num_regions"] == p["num_regions"] == len(p["regions"]), key
            assert c["outputs"]["normalized"] == p["outputs"]["normalized"] == f"{key}.normalized.npy"
            assert c["outputs"]["regions"] == p["outputs"]["regions"] == f"{key}.regions.npy"
            assert abs(c["object_score_normalized"] - p["object_score_normalized"]) <= FIELD_TOL, key
            c_labels, p_labels = np.load(c_dir / f"{key}.regions.npy"), np.load(p_dir / f"{key}.regions.npy")
            assert c_labels.dtype == p_labels.dtype == np.dtype("<i4") and c_labels.shape == (len(points),)
            np.testing.assert_array_equal(c_labels, p_labels, err_msg=key)  # same region point sets, same ids
            c_norm, p_norm = np.load(c_dir / f"{key}.normalized.npy"), np.load(p_dir / f"{key}.normalized.npy")
            assert c_norm.dtype == np.dtype("<f4") and np.abs(c_norm - p_norm).max() <= FIELD_TOL, key
            _assert_regions_close(c["regions"], p["regions"], FIELD_TOL, key)
            # the same rules on identical input (C++'s points and scores): identical results
            ref = decide(points, c_fused, c["object_score"], cal)
            assert ref.decision == c["decision"], key
            np.testing.assert_array_equal(ref.regions.labels, c_labels, err_msg=key)
            np.testing.assert_array_equal(ref.normalized, c_norm, err_msg=key)
            _assert_regions_close(c["regions"], ref.regions.to_json(), 1e-12, key)
            assert _region_sets(c_labels) == {r.id: tuple(r.indices) for r in ref.regions.regions}
            seen[c["decision"]] += 1
            seen["regions"] += c["num_regions"]
    assert seen["ok"] >= 1 and seen["reject"] >= 1 and seen["regions"] >= 10, seen


def _python_refusal(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from align3d_rt.cli import main

    capsys.readouterr()
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("align3d-rt infer: error: "), lines
    return lines[0].removeprefix("align3d-rt infer: error: ")


def test_foreign_edited_and_conflicting_calibrations_refused_like_python(
        build_dir: Path, bundle: Path, clouds: dict[str, tuple[str, list[Path]]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.artifacts.calibration import Calibration, ThresholdSet, save_calibration

    def made(source_hash: str, name: str) -> Path:
        cal = Calibration(
            product="widget", source={"kind": "bundle", "manifest_sha256": source_hash}, scoring="default",
            dataset="", category="", rule={"name": "conformal", "target_false_reject": 0.05, "confidence": None,
                                           "target_false_accept": None},
            n_good=20, n_bad=0, object=ThresholdSet(0.5, 0.0, 1.0, 20, {}), point=ThresholdSet(0.5, 0.0, 1.0, 20, {}))
        return save_calibration(cal, tmp_path / name)

    manifest = json.loads((bundle / "manifest.json").read_text())
    foreign = made("f" * 64, "foreign.json")
    edited = made(manifest["manifest_sha256"], "edited.json")
    edited.write_text(edited.read_text().replace('"threshold": 0.5', '"threshold": 0.25', 1))
    mine = made(manifest["manifest_sha256"], "mine.json")
    cloud = str(clouds["loose"][1][0])
    cases = [(foreign, [], f"{foreign}: calibration is for bundle {'f' * 64}, this bundle is "),
             (edited, [], f"{edited}: calibration checksum mismatch (the file was edited or is corrupt)"),
             (mine, ["--dataset", "mvtec3d"], f"{mine}: calibration was made with --dataset ''; --dataset 'mvtec3d'")]
    for i, (cal, extra, expected) in enumerate(cases):
        out_c, out_p = tmp_path / f"cpp{i}", tmp_path / f"py{i}"
        proc = _inspect(build_dir, str(bundle), cloud, "--calibration", str(cal), "--out", str(out_c), *extra)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        py_line = _python_refusal(["infer", cloud, "--bundle", str(bundle), "--backend", "openvino", "--calibration",
                                   str(cal), "--out", str(out_p), "--no-ply", "--no-png", *extra], capsys)
        assert lines[0] == py_line and lines[0].startswith(expected), (lines[0], py_line)
        assert not out_c.exists() and not out_p.exists()
    # the embedding example with a calibration: the Inspector decides on every score()
    proc = subprocess.run([str(build_dir / "cpp" / "align3d_example"), str(bundle), str(mine)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for row in (line.split() for line in proc.stdout.strip().splitlines()):
        assert row[8] == "decision" and row[9] == ("reject" if float(row[1]) > 0.5 else "ok") and row[10] == "regions"
