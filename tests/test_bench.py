"""``align3d-rt bench`` (align3d_rt.eval.bench): end to end on align3d-tiny, a real memory column, rows from the
registry, one-line CLI errors, and the GPU check's dry mode."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.eval.bench import BenchConfig, plan, run_bench
from align3d_rt.eval.bench.run import baseline_row_id
from align3d_rt.runtime import registry

REPO = Path(__file__).resolve().parents[1]
SMALL_SCAN = (180, 240)  # generated MVTec-style scans smaller than the benchmark's, so preprocessing is quick


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "out"
    config = BenchConfig(out=out, clip="align3d-tiny", kinds=("mvtec", "real3d"), samples=2,
                         rows=(baseline_row_id(),), batch_sizes=(1, 2), warmup_each_batch=False, isolate=False,
                         mvtec_scan_size=SMALL_SCAN, note="test run")
    return run_bench(config), out


def test_bench_runs_end_to_end_and_writes_table_json_png(tiny_bench: tuple[dict, Path]) -> None:
    report, out = tiny_bench
    measured = [r for r in report["rows"] if r["status"] == "ok"]
    assert [r["row_id"] for r in measured] == [baseline_row_id()], report["rows"]
    row = measured[0]
    for kind in ("mvtec", "real3d"):
        k = row["by_kind"][kind]
        lat = k["latency_uncached_s"]
        assert lat["n"] == 2 and 0 < lat["median"] <= lat["p95"]
        # the uncached latency holds the preprocessing; the cached one reads the cache instead
        assert k["latency_cached_s"]["median"] > 0
        assert set(k["stream"]) == {"1", "2"} and all(s["samples"] == 2 and s["fps"] > 0 for s in k["stream"].values())
        assert k["fps_best"] == max(s["fps"] for s in k["stream"].values())
        assert all(k["stages_s"][s] > 0 for s in ("render", "encode", "backproject", "write"))
        assert k["encoder_alone_fps"] == pytest.approx(1.0 / k["stages_s"]["encode"])
    assert row["by_kind"]["real3d"]["points_mean"] == 112_896
    assert row["memory"]["host_peak_rss_mb"] >= row["memory"]["host_rss_before_mb"] > 0
    # files on disk -> written scores (and the blurred grid map for organized scans)
    serial = out / "work" / "outputs" / baseline_row_id().replace(":", "_") / "mvtec" / "serial"
    scores = np.load(serial / "mvtec_000.scores.npy")
    assert scores.shape == np.load(serial / "mvtec_000.points.npy").shape and np.isfinite(scores).all()
    assert np.load(serial / "mvtec_000.map.npy").shape == (336, 336)
    md = (out / "bench.md").read_text()
    assert "RTX 4090" in md and "0.19" in md and "5.30" in md and "2791" in md  # the paper's row, labelled
    assert row["label"] in md and "encoder-alone FPS" in md
    assert "Batches of clouds" in md and ("batch 2:" in md or "no gain:" in md)  # the gain, or why none
    data = json.loads((out / "bench.json").read_text())
    assert data["machine"]["cpu_model"] and data["machine"]["logical_cores"] >= 1
    assert "numpy" in data["machine"]["libraries"] and data["best_cpu"]["row_id"] == baseline_row_id()
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rows that cannot run here are listed with their reason, not measured
    skipped = [r for r in data["rows"] if r["status"] == "skipped"]
    assert all(r["reason"] for r in skipped)


_MEMORY_BY_BATCH = """
import json, sys
from pathlib import Path
from align3d_rt.eval.bench.inputs import generate_real3d
from align3d_rt.eval.bench.measure import stream_pass
from align3d_rt.eval.bench.memory import PeakMemory
from align3d_rt.runtime.detector import Detector
from align3d_rt.train.random_run import random_run_dir

tmp = Path(sys.argv[1])
run = random_run_dir(tmp / "run", clip="align3d-tiny", dataset="mvtec3d", category="bagel")
clouds = generate_real3d(tmp / "clouds", 8)
peaks = {}
with Detector.from_run(run, device="cpu") as detector:
    stream_pass(detector, clouds, tmp / "warm", 1, depth=1)
    for batch in (1, 8):
        with PeakMemory() as mem:
            res = stream_pass(detector, clouds, tmp / f"b{batch}", batch, depth=1)
        assert res["samples"] == 8
        peaks[batch] = mem.result()["host_peak_rss_mb"]
print(json.dumps(peaks))
"""


def test_memory_column_grows_with_the_batch(tmp_path: Path) -> None:
    """The peak host RSS measured over a stream pass at batch 8 is above the one at batch 1 (same clouds).

    Measured in a fresh process: inside a long pytest process the heap already holds freed memory from
    earlier tests, which the batch-8 pass reuses without growing the RSS (the test flaked that way)."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _MEMORY_BY_BATCH, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    assert peaks[8] > peaks[1] + 20.0, peaks


def test_peak_memory_sees_a_short_allocation() -> None:
    from align3d_rt.eval.bench.memory import PeakMemory

    with PeakMemory() as small:
        np.ones(1 << 20, np.uint8).sum()
    with PeakMemory() as big:
        np.ones(200 << 20, np.uint8).sum()  # 200 MB, freed at once
    assert big.result()["host_peak_rss_mb"] - big.result()["host_rss_before_mb"] > 150
    assert small.result()["host_peak_rss_mb"] - small.result()["host_rss_before_mb"] < 100


def test_rows_come_from_the_registry(tmp_path: Path) -> None:
    spec = registry.BackendSpec(name="fakebench", module="no_such_module_for_bench", runner="Fake", source="bundle",
                                devices=("cpu",), precisions=("fp32",), install_hint="pip install nothing",
                                summary="a test backend", formats=("onnx",),
                                variants=(registry.Variant("v1", "variant one"),
                                          registry.Variant("gpu", "on a GPU", needs_gpu=True)))
    registry.register(spec)
    try:
        rows = {r.row_id: r for r in plan(BenchConfig(out=tmp_path, device="cpu"))}
    finally:
        registry.unregister("fakebench")
    assert "not available here" in rows["fakebench:v1"].skip_reason  # its module is missing
    assert "GPU" in rows["fakebench:gpu"].skip_reason
    for name in registry.list_backends():
        for v in registry.get(name).bench_variants():
            assert f"{name}:{v.key}" in rows


@pytest.mark.parametrize("argv, needle", [
    (["--samples", "0"], "argument --samples: must be a positive integer"),
    (["--batch-sizes", "1,x"], "--batch-sizes"),
    (["--kinds", "kitti"], "--kinds"),
    (["--rows", "nosuchrow"], "nosuchrow"),
    (["--run", "{tmp}/no_run"], "no_run"),
    (["--mvtec-root", "{tmp}/no_data"], "no_data"),
    (["--inspector", "{tmp}/no_binary"], "no_binary"),
    (["--skip", "nosuchrow=why"], "nosuchrow"),
    (["--skip", "torch:compile"], "ROW=REASON"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              argv: list[str], needle: str) -> None:
    from align3d_rt.cli import main

    out = tmp_path / "out"
    rc = main(["bench", "--out", str(out), "--clip", "align3d-tiny",
               *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("align3d-rt bench: error:") and needle in err[0] and "Traceback" not in err[0]
    assert not out.exists()  # nothing partial left


def test_cli_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.cli import main

    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["bench", "--out", str(target)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_cli_list_shows_every_row_and_why_it_is_skipped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from align3d_rt.cli import main

    assert main(["bench", "--out", str(tmp_path / "o"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.startswith(baseline_row_id()) and "runs here" in ln for ln in lines)
    assert any("cpp:inspector" in ln for ln in lines)
    assert not (tmp_path / "o").exists()
    assert main(["bench", "--out", str(tmp_path / "o"), "--list", "--skip", f"{baseline_row_id()}=not today"]) == 0
    assert any(ln.startswith(baseline_row_id()) and "not today" in ln for ln in capsys.readouterr().out.splitlines())


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0


@pytest.mark.parametrize("dry", [True, False])
def test_gpu_check_skips_cleanly_without_a_gpu(tmp_path: Path, dry: bool) -> None:
    if _has_gpu():
        pytest.skip("this machine has an NVIDIA GPU: the check would run for real")
    out = tmp_path / "gpu"
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), *(["--dry-run"] if dry else []), str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    report = (out / "gpu_check.md").read_text()
    steps = [ln for ln in report.splitlines() if ln.startswith("| ") and not ln.startswith("| step")]
    assert [ln.split("|")[1].strip() for ln in steps] == ["install", "kernels", "tensorrt", "bench"]
    assert all("skipped" in ln and "no NVIDIA GPU" in ln for ln in steps)
    assert "GPU: none" in report
    if dry:  # the dry run also writes what each step would run, with its time limit
        plan_text = (out / "bench.plan").read_text()
        assert plan_text.startswith("timeout ") and "tensorrt:fp16" in plan_text
    assert not (out / "bench").exists()  # nothing ran


def test_torch_backend_autocast_and_bad_hint(tmp_path: Path) -> None:
    from align3d_rt.artifacts.run_dir import load_run
    from align3d_rt.errors import OptionError
    from align3d_rt.train.random_run import random_run_dir

    run = load_run(random_run_dir(tmp_path / "run", clip="align3d-tiny"))
    views = np.random.default_rng(0).integers(0, 256, (2, 336, 336, 3), dtype=np.uint8)
    with registry.create_runner(registry.default_backend("run"), run) as ref:
        a = ref.infer(views)
    runner = registry.create_runner(registry.default_backend("run"), run, precision_hint="bf16")
    with runner:
        b = runner.infer(views)
    assert runner.detector_info["compute_precision"] == "bf16"
    assert b.patch_maps.dtype == np.float32 and b.patch_maps.shape == a.patch_maps.shape
    diff = float(np.abs(a.patch_maps - b.patch_maps).max())
    assert 0 < diff < 0.1  # bf16 computes differently, but close
    with pytest.raises(OptionError, match="precision hint"):  # a bad value: bad input, not a missing backend
        registry.create_runner(registry.default_backend("run"), run, precision_hint="int4")


FAKE_INSPECTOR = """#!{python}
import json, sys
from pathlib import Path
import numpy as np
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
clouds = [a for a in args[1:args.index("--out")]]
out.mkdir(parents=True, exist_ok=True)
samples = {{}}
for c in clouds:
    key = Path(c).stem
    np.save(out / (key + ".scores.npy"), np.zeros((4, 3), np.float32))
    samples[key] = {{"file": c, "object_score": 0.5, "timings": {{"read": 0.01, "render": 0.02, "encode": 0.1,
                    "backproject": 0.003, "score": 0.001, "batch_size": 1}}}}
startup = {{"main_to_ready": 0.05, "load_bundle": 0.02, "load_encoder": 0.025}}
(out / "scores.json").write_text(json.dumps({{"samples": samples, "failed": {{}}, "args": args,
                                             "inspector": {{"startup_s": startup}}}}))
"""


def test_inspector_row_times_the_binary_and_reads_its_timings(tmp_path: Path) -> None:
    """A stand-in binary with the inspector's command line and scores.json: one process per cloud, one over all."""
    import sys

    from align3d_rt.eval.bench.inputs import CloudSet, generate_real3d
    from align3d_rt.eval.bench.inspector import measure_inspector

    binary = tmp_path / "align3d-inspect"
    binary.write_text(FAKE_INSPECTOR.format(python=sys.executable))
    binary.chmod(0o755)
    clouds: CloudSet = generate_real3d(tmp_path / "clouds", 2)
    res = measure_inspector(binary, tmp_path / "bundle", [clouds], tmp_path / "out")
    k = res["by_kind"]["real3d"]
    assert k["latency_uncached_s"]["n"] == 2 and k["fps_best"] > 0 and k["files"] == 2
    assert k["stages_s"]["encode"] == pytest.approx(0.1) and k["stages_s"]["backproject"] == pytest.approx(0.004)
    assert k["encoder_alone_fps"] == pytest.approx(10.0)
    assert res["memory"]["host_peak_rss_mb"] > 0
    args = json.loads((tmp_path / "out" / "real3d" / "all" / "scores.json").read_text())["args"]
    assert args[:1] == [str(tmp_path / "bundle")] and args[-2:] == ["--dataset", "real3d"]
    assert "--overwrite" in args  # a later bench over the same workdir replaces the inspector's earlier outputs
    twice = json.loads((tmp_path / "out" / "real3d" / "twice" / "scores.json").read_text())["args"]
    assert twice[1:5] == twice[1:3] * 2 and len(k["inspector_warm_timings"]) == 1  # the files twice, first left out
    assert k["fps_warm"] is None or k["fps_warm"] > 0  # None when the second pass was not slower (noise)
    # the row's FPS is the rate once started (as the Python rows'), the per-process rate is kept beside it
    assert k["fps_per_process"] > 0
    assert k["fps_best"] == (k["fps_warm"] if k["fps_warm"] else k["fps_per_process"])
    assert k["fps_is"] == ("once started" if k["fps_warm"] else "per process")
    # one process per cloud split by the inspector's own clocks: the rest of its wall clock is outside main
    split = k["startup_split_s"]
    assert split["load_bundle"] == pytest.approx(0.02) and split["load_encoder"] == pytest.approx(0.025)
    assert split["other_setup"] == pytest.approx(0.005) and split["warm_cloud"] == pytest.approx(0.134)
    assert split["first_cloud_extra"] == pytest.approx(0.0)  # the stand-in's clouds all take the same
    # the rest of each process's wall clock (the stand-in's times are made up, so it may be negative here)
    assert split["outside_main"] == pytest.approx(k["latency_uncached_s"]["median"] - 0.05 - 0.134)


def test_inspector_ab_script_alternates_two_binaries(tmp_path: Path) -> None:
    """bench/bench_inspector_ab.sh: the C++ row with binary A, then B, per round, on one shared workdir."""
    import sys

    pytest.importorskip("openvino")
    binaries = {}
    for side in "AB":
        binary = tmp_path / side / "align3d-inspect"
        binary.parent.mkdir()
        binary.write_text(FAKE_INSPECTOR.format(python=sys.executable))
        binary.chmod(0o755)
        binaries[side] = binary
    proc = subprocess.run(["bash", str(REPO / "bench" / "bench_inspector_ab.sh"), "align3d-tiny", "1", "1",
                           str(binaries["A"]), str(binaries["B"])], capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "OUT": str(tmp_path / "ab")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("rc 0") == 2, proc.stdout
    for side in "AB":
        report = json.loads((tmp_path / "ab" / "rounds" / f"r1_{side}" / "bench.json").read_text())
        (row,) = [r for r in report["rows"] if r.get("status") == "ok"]
        assert row["binary"] == str(binaries[side]) and f"binary {side}" in report["note"]
        assert row["by_kind"] and all(k["fps_best"] > 0 for k in row["by_kind"].values())
    assert len(list((tmp_path / "ab" / "work" / "bundles").iterdir())) == 1  # exported once, shared


def test_detector_startup_ab_alternates_two_trees(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """bench/bench_detector_startup.py: fresh processes of tree A and B load one bundle, a warm-up round
    not counted, and the per-round ratio A/B of each figure."""
    import sys

    from export_support import session_tiny

    bundle = session_tiny(tmp_path_factory.getbasetemp() / "tiny_session")["fp32"]
    out = tmp_path / "startup.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_detector_startup.py"), "--bundle", str(bundle),
                           "--tree-a", str(REPO), "--tree-b", str(REPO), "--backend", "onnxruntime", "--rounds", "2",
                           "--json", str(out), "--md", str(tmp_path / "startup.md")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["rounds"] == 2 and len(res["per_round"]) == 2 and proc.stderr.count("(warm-up)") == 1
    for fig in ("ready_s", "from_bundle_s", "import_s", "process_s"):
        s = res["summary"][fig]
        assert 0 < s["A"]["min"] <= s["A"]["median"] <= s["A"]["max"], (fig, s)
        assert s["ratio_a_over_b"]["median"] > 0
    assert res["summary"]["process_s"]["A"]["min"] > res["summary"]["ready_s"]["A"]["min"]
    assert "| ready_s |" in (tmp_path / "startup.md").read_text()


def test_profile_counts_quantized_matmuls_and_rerenders_a_saved_profile(tmp_path: Path) -> None:
    """bench/profile_openvino.py: the matmul line counts FullyConnectedQuantizedLegacy (the PERFORMANCE
    preset's int8 kernels), and --render rewrites a saved profile's tables from its rows."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("profile_openvino", REPO / "bench" / "profile_openvino.py")
    assert spec is not None and spec.loader is not None
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)
    rows = [{"node_type": "FullyConnectedQuantizedLegacy", "count": 2, "ms": 3.0, "share": 0.3, "exec_types": {}},
            {"node_type": "FullyConnected", "count": 1, "ms": 2.0, "share": 0.2, "exec_types": {}},
            {"node_type": "MatMul", "count": 1, "ms": 1.0, "share": 0.1, "exec_types": {}},
            {"node_type": "Subgraph", "count": 1, "ms": 4.0, "share": 0.4, "exec_types": {}}]
    assert prof.matmul_ms_of(rows) == 6.0
    saved = {"clip": "c", "views": 9, "openvino": "v", "cpu": "x", "cpus": 2, "cpu_capabilities": ["BF16"],
             "loadavg_start": 0.1, "loadavg_end": 0.2, "build": {"calibration_views": 18},
             "variants": {"int8": {"total_ms": 10.0, "rows": rows, "nodes": 5, "hint": "bf16", "ir": "int8.xml",
                                   "fused": {"attention_fused_nodes": {}, "softmax_nodes_left": 0,
                                             "layernorm_as_MVN": 0, "reorder_ms": 0.0, "convert_ms": 0.0,
                                             "matmul_fc_ms": 3.0}}}}
    (tmp_path / "p.json").write_text(json.dumps(saved))
    assert prof.main(["--render", str(tmp_path / "p.json"), "--md", str(tmp_path / "p.md")]) == 0
    assert "MatMul+FullyConnected* 6 ms" in (tmp_path / "p.md").read_text()
