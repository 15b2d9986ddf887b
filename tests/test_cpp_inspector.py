"""C++ inspector (issue #11): CMake build, ctest (normal and ASan+UBSan), and the align3d-inspect CLI
against Python's `align3d-rt infer --backend openvino` on the same fp32 bundle (tiny random CLIP)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpp_build

pytest.importorskip("openvino")
SCORE_TOL = 1e-4  # fp32 model, per-point and object scores (spec 10.3)

if cpp_build.missing_tools():
    pytest.skip(f"C++ toolchain missing ({', '.join(cpp_build.missing_tools())}); run scripts/setup.sh",
                allow_module_level=True)


@pytest.fixture(scope="module")
def build_dir() -> Path:
    return cpp_build.build("cpp")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cpp_build.openvino_fp32_bundle(tmp_path_factory.mktemp("cpp_bundle"))


def _sphere(n: int, seed: int) -> np.ndarray:
    p = np.random.default_rng(seed).normal(size=(n, 3))
    return (0.05 * p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Unorganized clouds in every format (PLY/PCD written by Open3D, which Python reads them with) and
    two organized grids: a bumpy dome on an empty background (no plane for RANSAC, one DBSCAN cluster) and a
    generated scan with a tilted background plane, debris and dropouts (RANSAC + DBSCAN, spec 4.2)."""
    import open3d as o3d
    import tifffile

    d = tmp_path_factory.mktemp("cpp_clouds")
    pts = _sphere(4000, 3)
    pts[::97] = 0.0  # all-zero rows: dropped from .npy, kept in .ply/.pcd (spec 4.1)
    pts[5] = np.nan
    np.save(d / "sphere.npy", pts)
    box = (np.random.default_rng(4).uniform(-0.03, 0.03, size=(3000, 3)) * [1.0, 0.6, 0.3]).astype(np.float32)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(box.astype(np.float64)))
    o3d.io.write_point_cloud(str(d / "box.ply"), cloud, write_ascii=False)
    o3d.io.write_point_cloud(str(d / "box_ascii.pcd"), cloud, write_ascii=True)
    o3d.io.write_point_cloud(str(d / "box_bin.pcd"), cloud, write_ascii=False)
    h, w = 180, 150
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = (xx - w / 2) * 4e-4, (yy - h / 2) * 4e-4
    r2 = (x * x + y * y) / 0.025**2
    z = 0.4 - 0.02 * np.sqrt(np.clip(1 - r2, 0, None)) - 0.002 * np.exp(-((x - 0.01) ** 2 + y**2) / 2e-5)
    grid = np.stack([x, y, z], -1).astype(np.float32)
    grid[r2 >= 1] = 0.0
    grid[60, 70] = np.nan
    tifffile.imwrite(d / "dome.tiff", grid)
    from align3d_rt.data.synthetic import render_mvtec_sample

    scene, _, _ = render_mvtec_sample("ring", "hole", (160, 200), np.random.default_rng(8))
    tifffile.imwrite(d / "scene.tiff", scene)
    return {p.stem: p for p in sorted(d.iterdir())}


def _inspect(build_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(build_dir / "cpp" / "align3d-inspect"), *args], capture_output=True, text=True,
                          timeout=300)


def test_ctest_suite_passes(build_dir: Path) -> None:
    proc = cpp_build.ctest(build_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    names = set(re.findall(r"Test\s+#\d+: (\S+)", proc.stdout))
    assert {"inspector_test_readers", "inspector_test_bundle", "inspector_test_decisions"} <= names, names


def test_readers_and_bundle_checks_under_asan_ubsan() -> None:
    """The untrusted-input code (readers, bundle verification, geometry) under AddressSanitizer + UBSan."""
    out = cpp_build.build("cpp-asan", "-DALIGN3D_SANITIZE=ON", "-DALIGN3D_READERS_ONLY=ON",
                          "-DCMAKE_BUILD_TYPE=Debug", "-DALIGN3D_GEOMETRY_TOOLS=OFF")
    proc = cpp_build.ctest(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "inspector_test_readers" in proc.stdout and "inspector_test_bundle" in proc.stdout
    assert "inspector_test_decisions" in proc.stdout


def test_cli_matches_python_openvino(build_dir: Path, bundle: Path, clouds: dict[str, Path], tmp_path: Path) -> None:
    from align3d_rt.cli import main

    files = [str(p) for p in clouds.values()]
    # f32 compute on both sides: the bit-exact route (the inspector's default is the fastest one, bf16 on AMX)
    proc = _inspect(build_dir, str(bundle), *files, "--out", str(tmp_path / "cpp"), "--png", "--precision-hint", "f32")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "cpp" / "scores.json").read_text())["inspector"]["compute_precision"] == "f32"
    rc = main(["infer", *files, "--bundle", str(bundle), "--backend", "openvino", "--precision-hint", "f32",
               "--out", str(tmp_path / "py"), "--no-ply", "--no-png"])
    assert rc == 0
    cpp = json.loads((tmp_path / "cpp" / "scores.json").read_text())["samples"]
    py = json.loads((tmp_path / "py" / "scores.json").read_text())["samples"]
    assert set(cpp) == set(py) == set(clouds)
    for key in py:
        c_pts, p_pts = (np.load(tmp_path / side / f"{key}.points.npy") for side in ("cpp", "py"))
        np.testing.assert_array_equal(c_pts, p_pts, err_msg=key)  # same scored points, same order
        c, p = (np.load(tmp_path / side / f"{key}.scores.npy") for side in ("cpp", "py"))
        assert c.shape == p.shape == (py[key]["num_points"], 3)
        assert np.abs(c - p).max() <= SCORE_TOL, (key, np.abs(c - p).max())
        assert abs(cpp[key]["object_score"] - py[key]["object_score"]) <= SCORE_TOL, key
        assert set(cpp[key]["timings"]) >= {"read", "render", "encode", "backproject", "score"}
    for key in ("dome", "scene"):
        np.testing.assert_array_equal(np.load(tmp_path / "cpp" / f"{key}.grid_index.npy"),
                                      np.load(tmp_path / "py" / f"{key}.grid_index.npy"))
    assert cpp["scene"]["num_points"] < 0.6 * 336 * 336  # the background plane was removed, not scored
    assert cpp["sphere"]["num_points"] == 4000 - 1 - len(range(0, 4000, 97))
    png = (tmp_path / "cpp" / "sphere.views.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "cpp").glob(".*tmp*"))


def _truncated_ply(d: Path) -> Path:
    p = d / "short.ply"
    head = b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\nproperty float y\n" \
           b"property float z\nend_header\n"
    p.write_bytes(head + np.ones((10, 3), np.float32).tobytes())
    return p


def test_bad_input_one_line_exit_2_nothing_written(build_dir: Path, bundle: Path, clouds: dict[str, Path],
                                                  tmp_path: Path) -> None:
    import shutil

    lie = tmp_path / "lie.pcd"
    lie.write_bytes(b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 50\nHEIGHT 1\nPOINTS 50\nDATA binary\n"
                    + np.ones((7, 3), np.float32).tobytes())
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    blob = bytearray((tampered / "encoder.bin").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tampered / "encoder.bin").write_bytes(bytes(blob))
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    text = (edited / "manifest.json").read_text()
    (edited / "manifest.json").write_text(text.replace('"fusion_weight": 0.5', '"fusion_weight": 0.25', 1))
    good = str(clouds["sphere"])
    cases = [
        ([str(bundle), str(tmp_path / "nope.npy")], str(tmp_path / "nope.npy"), "point file not found"),
        ([str(tampered), good], str(tampered / "encoder.bin"), "sha256 differs from the manifest"),
        ([str(edited), good], str(edited / "manifest.json"), "manifest checksum mismatch"),
        ([str(bundle), good, "--precision-hint", "fp8"], "--precision-hint", "unknown precision 'fp8'"),
        ([str(bundle), good, str(tmp_path / "nope.npy")], str(tmp_path / "nope.npy"), "point file not found"),
        ([str(bundle), good], str(bundle), "bundle's folder"),  # with --out inside the bundle (below)
    ]
    for i, (args, path, problem) in enumerate(cases):
        out = tmp_path / f"out{i}" if problem != "bundle's folder" else bundle / "results"
        path = str(out) if problem == "bundle's folder" else path
        proc = _inspect(build_dir, *args, "--out", str(out))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith(f"{path}: ") and problem in lines[0], (lines, path, problem)
        assert not out.exists(), f"{out} was created for bad input {args}"


def test_mixed_input_scores_the_good_files_exit_1(build_dir: Path, bundle: Path, clouds: dict[str, Path],
                                                 tmp_path: Path) -> None:
    """Issue #21 family 5: as Python, one line per bad file, the good ones scored, exit 1; nothing of the bad."""
    from align3d_rt.cli import main

    lie = tmp_path / "lie.pcd"
    lie.write_bytes(b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 50\nHEIGHT 1\nPOINTS 50\nDATA binary\n"
                    + np.ones((7, 3), np.float32).tobytes())
    coincident = tmp_path / "coincident.npy"  # a broken scan: every point at one place renders as blank views
    np.save(coincident, np.tile(np.float32([[0.1, 0.2, 0.3]]), (5000, 1)))
    bad = {str(_truncated_ply(tmp_path)): "header promises 100 vertex rows",
           str(lie): "header promises 50 points, the file holds 7",
           str(coincident): "only 1 distinct point location(s) among 5000 valid points"}
    files = [str(clouds["sphere"]), *bad, str(clouds["box"])]
    proc = _inspect(build_dir, str(bundle), *files, "--out", str(tmp_path / "cpp"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in proc.stderr, lines
    for line, (path, problem) in zip(lines[:3], bad.items(), strict=True):  # lines[3]: the summary
        assert line.startswith(f"{path}: ") and problem in line, (line, path)
    assert "scored 2 sample(s), 3 failed" in lines[3]
    summary = json.loads((tmp_path / "cpp" / "scores.json").read_text())
    assert sorted(summary["samples"]) == ["box", "sphere"] and sorted(summary["failed"]) == sorted(bad)
    assert sorted(p.name for p in (tmp_path / "cpp").iterdir()) == sorted(
        ["scores.json", "box.scores.npy", "box.points.npy", "sphere.scores.npy", "sphere.points.npy"])
    rc = main(["infer", *files, "--bundle", str(bundle), "--backend", "openvino", "--out", str(tmp_path / "py"),
               "--no-ply", "--no-png"])
    py = json.loads((tmp_path / "py" / "scores.json").read_text())
    assert rc == 1 and sorted(py["samples"]) == sorted(summary["samples"]) and sorted(py["failed"]) == sorted(bad)
    assert py["failed"][str(coincident)] == summary["failed"][str(coincident)]  # the same words on both sides


def test_colliding_names_one_result_each_same_keys_as_python(build_dir: Path, bundle: Path, clouds: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """a.npy, a.ply, a_1.npy, dir1/a.npy, dir2/a.npy, a.npy again, and two folders called x (with a.npy,
    a.ply, sub/b.npy, a hidden file): N inputs, N results, the keys Python gives."""
    import shutil

    from align3d_rt.data.files import collect_files

    files = []
    for rel, src in (("a.npy", "sphere"), ("a.ply", "box"), ("a_1.npy", "sphere"), ("dir1/a.npy", "sphere"),
                     ("dir2/a.npy", "sphere"), ("p/x/a.npy", "sphere"), ("p/x/a.ply", "box"),
                     ("p/x/sub/b.npy", "sphere"), ("p/x/.hidden/c.npy", "sphere"), ("q/x/a.npy", "sphere")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clouds[src], tmp_path / rel)
        files.append(tmp_path / rel)
    inputs = [*files[:5], tmp_path / "a.npy", tmp_path / "p" / "x", tmp_path / "q" / "x"]  # a.npy twice: 2 results
    expected = [(str(f), k) for f, k in collect_files(inputs, exclude=tmp_path / "out")]
    assert len({k for _, k in expected}) == len(expected) == 10
    proc = _inspect(build_dir, str(bundle), *map(str, inputs), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    samples = json.loads((tmp_path / "out" / "scores.json").read_text())["samples"]
    assert sorted((s["file"], k) for k, s in samples.items()) == sorted(expected)
    for _, key in expected:
        assert (tmp_path / "out" / f"{key}.scores.npy").is_file(), key
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _inspect(build_dir, str(bundle), str(empty), "--out", str(tmp_path / "out2"))
    assert proc.returncode == 2 and "no point-cloud files" in proc.stderr and not (tmp_path / "out2").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_out_folder_rules_as_python(build_dir: Path, bundle: Path, clouds: dict[str, Path], tmp_path: Path) -> None:
    """Issue #21 family 1: new or empty --out, or --overwrite of our own earlier output only; never the bundle."""
    sphere, box = str(clouds["sphere"]), str(clouds["box"])
    bundle_before = _tree(bundle)
    for out in (bundle, bundle / "sub"):
        for extra in ((), ("--overwrite",)):
            proc = _inspect(build_dir, str(bundle), sphere, "--out", str(out), *extra)
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert "bundle's folder" in proc.stderr
    assert _tree(bundle) == bundle_before and not (bundle / "sub").exists()
    out = tmp_path / "out"
    assert _inspect(build_dir, str(bundle), sphere, "--out", str(out)).returncode == 0
    proc = _inspect(build_dir, str(bundle), box, "--out", str(out))
    assert proc.returncode == 2 and "not empty" in proc.stderr and "--overwrite" in proc.stderr
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    before = _tree(out)
    proc = _inspect(build_dir, str(bundle), box, "--out", str(out), "--overwrite")
    assert proc.returncode == 2 and "did not write" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert _tree(out) == before and (out / "mine").is_dir()
    (out / "notes.txt").unlink()
    (out / "mine").rmdir()
    (out / ".sphere.scores.npy.tmp-12345").write_bytes(b"left by a killed run")
    proc = _inspect(build_dir, str(bundle), box, "--out", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["box.points.npy", "box.scores.npy", "scores.json"]
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    proc = _inspect(build_dir, str(bundle), box, "--out", str(user), "--overwrite")
    assert proc.returncode == 2 and "not an align3d-inspect output folder" in proc.stderr
    assert (user / "keep.txt").read_text() == "x"


def test_locked_folder_and_two_inspectors(build_dir: Path, bundle: Path, clouds: dict[str, Path],
                                          tmp_path: Path) -> None:
    """A folder another run holds (Python's flock) is refused; two inspectors into one new folder: one wins,
    the other exits 2 with one line, and the winner's result is whole."""
    import fcntl
    import os

    out = tmp_path / "locked"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        proc = _inspect(build_dir, str(bundle), str(clouds["sphere"]), "--out", str(out))
    finally:
        os.close(fd)
    assert proc.returncode == 2 and "locked" in proc.stderr and not any(out.iterdir())
    both = tmp_path / "both"
    exe = str(build_dir / "cpp" / "align3d-inspect")
    procs = [subprocess.Popen([exe, str(bundle), str(clouds[name]), "--out", str(both)], stderr=subprocess.PIPE,
                              text=True) for name in ("sphere", "box")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert len(loser.strip().splitlines()) == 1 and ("locked" in loser or "not empty" in loser), loser
    winner = ("sphere", "box")[[rc for rc, _ in results].index(0)]
    assert list(json.loads((both / "scores.json").read_text())["samples"]) == [winner]


def test_example_program_scores_a_generated_cloud(build_dir: Path, bundle: Path) -> None:
    proc = subprocess.run([str(build_dir / "cpp" / "align3d_example"), str(bundle)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.strip().splitlines()]
    assert len(rows) == 2 and rows[0][:4] == rows[1][:4]  # same cloud twice: same scores
    assert 0.0 < float(rows[0][1]) <= 2.0 and int(rows[0][5]) == 4000


def test_tensorrt_option_builds_nothing_without_tensorrt(tmp_path: Path) -> None:
    """-DALIGN3D_WITH_TENSORRT=ON on a machine without TensorRT configures, says so, and adds no backend."""
    proc = subprocess.run(["cmake", "-S", str(cpp_build.ROOT), "-B", str(tmp_path / "b"), "-DALIGN3D_WITH_TENSORRT=ON",
                           f"-DOpenVINO_DIR={cpp_build.openvino_cmake_dir()}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TensorRT (set TENSORRT_ROOT) or the CUDA toolkit not found; backend not built" in proc.stdout
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    assert "TRT_INCLUDE_DIR:PATH=TRT_INCLUDE_DIR-NOTFOUND" in cache


def test_default_route_is_the_fastest_compiled_once_through_the_cache(build_dir: Path, bundle: Path,
                                                                     clouds: dict[str, Path], tmp_path: Path) -> None:
    """Without --precision-hint the inspector computes in bf16 where the CPU reports BF16 (else f32), as
    Python's `auto`; the compiled model goes to $ALIGN3D_CACHE/openvino/<setting>/ (never the bundle's folder)
    and a second process loads it from there with the same scores."""
    from align3d_rt.loaders import openvino_core

    caps = {str(c).upper() for c in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
    want = "bf16" if "BF16" in caps else "f32"
    cache = tmp_path / "cache"
    env = {**os.environ, "ALIGN3D_CACHE": str(cache)}
    before = sorted(p.name for p in bundle.iterdir())
    scores = []
    for i in range(2):
        proc = subprocess.run([str(build_dir / "cpp" / "align3d-inspect"), str(bundle), str(clouds["sphere"]),
                               "--out", str(tmp_path / f"o{i}")], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        info = json.loads((tmp_path / f"o{i}" / "scores.json").read_text())["inspector"]
        assert info["compute_precision"] == want and info["model_file"].endswith(".xml")
        scores.append(np.load(tmp_path / f"o{i}" / "sphere.scores.npy"))
        blobs = list((cache / "openvino" / f"CPU-{want}-LATENCY-sdefault-t0").glob("*.blob"))
        assert len(blobs) == 1, list(cache.rglob("*"))  # the first run wrote it, the second reused it
    np.testing.assert_array_equal(scores[0], scores[1])
    assert np.isfinite(scores[0]).all()
    assert sorted(p.name for p in bundle.iterdir()) == before
    proc = _inspect(build_dir, str(bundle), str(clouds["sphere"]), "--out", str(tmp_path / "auto"),
                    "--precision-hint", "AUTO")  # the spellings Python accepts (fp32, bfloat16, ...)
    assert proc.returncode == 0, proc.stderr


def test_throughput_hint_splits_the_views_and_scores_as_latency(build_dir: Path, bundle: Path,
                                                                clouds: dict[str, Path], tmp_path: Path) -> None:
    """--performance-hint THROUGHPUT (Python's option): one infer request per stream, the 9 views split over
    them, results in view order: the same scores as LATENCY (f32 compute)."""
    files = [str(clouds["sphere"]), str(clouds["box"])]
    for hint in ("LATENCY", "THROUGHPUT"):
        proc = _inspect(build_dir, str(bundle), *files, "--out", str(tmp_path / hint), "--precision-hint", "f32",
                        "--performance-hint", hint)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / hint / "scores.json").read_text())["inspector"]["performance_hint"] == hint
    for key in ("sphere", "box"):
        lat, thr = (np.load(tmp_path / hint / f"{key}.scores.npy") for hint in ("LATENCY", "THROUGHPUT"))
        assert np.abs(lat - thr).max() <= SCORE_TOL, key
    proc = _inspect(build_dir, str(bundle), files[0], "--out", str(tmp_path / "bad"), "--performance-hint", "FAST")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "--performance-hint: unknown hint 'FAST' (choose LATENCY or THROUGHPUT)"), proc.stderr
    assert not (tmp_path / "bad").exists()


def test_scores_json_splits_the_start_up(build_dir: Path, bundle: Path, clouds: dict[str, Path],
                                          tmp_path: Path) -> None:
    """inspector.startup_s: main() to a ready Inspector, of which the bundle (hashing) and the encoder load;
    the bench splits one process's wall clock with it."""
    from align3d_rt.eval.bench.inspector import _startup_split

    proc = _inspect(build_dir, str(bundle), str(clouds["sphere"]), "--out", str(tmp_path / "one"))
    assert proc.returncode == 0, proc.stderr
    startup = json.loads((tmp_path / "one" / "scores.json").read_text())["inspector"]["startup_s"]
    parts = {"load_bundle", "load_encoder", "wait_files"}
    assert set(startup) == {"main_to_ready", *parts}
    assert all(v >= 0 for v in startup.values())
    assert startup["load_encoder"] > 0  # the IR compiled (or imported from the cache)
    # rounded to 1e-4 s each
    assert startup["main_to_ready"] + 4e-4 >= sum(startup[k] for k in parts)
    split = _startup_split(tmp_path / "one", wall=10.0, warm_cloud_s=0.01)
    assert split is not None and set(split) == {"outside_main", *parts, "other_setup", "first_cloud_extra",
                                                "warm_cloud"}
    assert split["load_bundle"] == startup["load_bundle"] and split["warm_cloud"] == 0.01
    assert split["other_setup"] >= -4e-4
    assert 0 < split["outside_main"] < 10.0
    assert _startup_split(tmp_path / "missing", wall=1.0, warm_cloud_s=None) is None


def test_parallel_hashing_reports_the_first_problem_in_sorted_order_on_both_sides(
        build_dir: Path, bundle: Path, clouds: dict[str, Path], tmp_path: Path) -> None:
    """Two bad files in one bundle: Python and C++ hash in parallel (and on the OpenVINO route hash the graph
    while the IR compiles) but report the same (first, in sorted order of the manifest's paths) problem, as
    the sequential check did (runtime-spec 2.4)."""
    import shutil

    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.errors import BundleError
    from align3d_rt.runtime.detector import Detector

    manifest = json.loads((bundle / "manifest.json").read_text())
    names = sorted(manifest["files"])
    first, last = names[0], names[-1]
    assert first != last
    # the inspector hashes the IR first and the ONNX graph while the IR compiles: a bad graph alone is
    # found after the compile, and is still refused before anything is scored or written
    onnx = manifest["onnx"]["file"]
    assert onnx not in (manifest["openvino"]["xml"], manifest["openvino"]["bin"])
    for altered, removed, want in [(first, last, first), (last, first, first), (onnx, None, onnx)]:
        case = tmp_path / f"{altered}-{removed}".replace("/", "_")
        shutil.copytree(bundle, case)
        blob = bytearray((case / altered).read_bytes())
        blob[0] ^= 0xFF
        (case / altered).write_bytes(bytes(blob))
        if removed:
            (case / removed).unlink()
        problem = ("sha256 differs from the manifest" if want == altered else "missing from the bundle")
        with pytest.raises(BundleError) as err:
            load_bundle(case)
        with pytest.raises(BundleError) as deferred:  # Python's OpenVINO route hashes the graph while compiling
            Detector.from_bundle(case, backend="openvino", precision_hint="f32")
        assert str(deferred.value) == str(err.value)
        proc = _inspect(build_dir, str(case), str(clouds["sphere"]), "--out", str(tmp_path / "out"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert str(err.value) == lines[0], (str(err.value), lines[0])
        assert lines[0].startswith(f"{case / want}: ") and problem in lines[0], lines
        assert not (tmp_path / "out").exists()


def test_two_inspectors_released_in_order_leave_signals_handled(build_dir: Path, bundle: Path,
                                                                 tmp_path: Path) -> None:
    """The C++ side of tests/test_openvino_core.py: Inspectors share the process's one ov::Core, so
    releasing two in the order they were made leaves the main thread's signal stack mapped and a SIGTERM
    handler runs (with one Core each, OpenVINO's CPU plugin left it unmapped: SIGSEGV, exit -11)."""
    env = {**os.environ, "ALIGN3D_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([str(build_dir / "cpp" / "test_two_inspectors"), str(bundle)], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "handled"
