"""A real Triton server on 127.0.0.1 serving OUR repository: two concurrent clients, scores equal to local
inference, dynamic batching seen in the server's statistics, and the figures printed.

The server is the tritonserver binary nvidia-pytriton bundles (Python backend only), run from
.venv-triton (scripts/setup.sh) on the repository ``export --format triton --triton-encoder python``
writes for the tiny CLIP bundle. Heavy: the server's start compiles the pipeline's numba kernels.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from export_support import session_samples, session_tiny
from triton_server import REPO, Server, pytriton_dir, start_server

from align3d_rt.cli import main

pytestmark = pytest.mark.heavy
CLOUDS_PER_CLIENT = 4
VIEWS = 9  # paper9 preset: one request's views


def _python_repository(factory: pytest.TempPathFactory, name: str, *options: str) -> tuple[dict[str, Path], Path, Path]:
    """(tiny bundles, work folder, repository) exported with the python encoder and ``options``."""
    if pytriton_dir() is None:
        pytest.fail(f"{REPO / '.venv-triton'}: the Triton venv is missing; run scripts/setup.sh (it makes it)")
    tiny = session_tiny(factory.mktemp("tiny"))
    work = factory.mktemp(name)
    repo = work / "repo"
    assert main(["export", "--format", "triton", "--bundle", str(tiny["fp32"]), "--out", str(repo),
                 "--triton-encoder", "python", *options]) == 0
    return tiny, work, repo


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Path], float]]:
    # Preferred batch = two requests' views, and up to 1 s for a partner (about the time a pipeline instance
    # spends around its encoder call here): requests of the two clients merge, and once merged the two
    # clients stay in step. Without the wait, merging needs more requests in flight than pipeline instances.
    tiny, work, repo = _python_repository(tmp_path_factory, "triton", "--opt-batch", str(2 * VIEWS),
                                          "--max-batch", str(2 * VIEWS), "--triton-queue-delay-us", "1000000",
                                          "--triton-pipeline-instances", "2")
    t0 = time.perf_counter()
    server = start_server(repo, work, numba_cache=REPO / ".venv-triton" / "numba-cache")
    yield server, tiny, time.perf_counter() - t0
    server.stop()
    assert server.process.returncode is not None, "tritonserver still running after stop()"


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose pipeline model failed to load: its bundle copy was altered after export."""
    _, work, repo = _python_repository(tmp_path_factory, "triton_tampered", "--triton-pipeline-instances", "1")
    graph = repo / "align3d" / "1" / "bundle" / "encoder.onnx"
    data = graph.read_bytes()
    graph.unlink()  # hard-linked to the encoder's model.onnx: replace the bundle's copy only
    graph.write_bytes(data + b"\0")
    server = start_server(repo, work, numba_cache=REPO / ".venv-triton" / "numba-cache",
                          extra_args=("--exit-on-error=false",), wait_for="live")
    yield server
    server.stop()
    assert server.process.returncode is not None, "tritonserver still running after stop()"


def _clouds(root: Path) -> list[list[Path]]:
    """Two clients' .npy clouds (the generated samples' points, shifted so every file differs)."""
    samples = session_samples(root / "samples", n=4)
    files: list[list[Path]] = [[], []]
    for c in range(2):
        for i in range(CLOUDS_PER_CLIENT):
            pts = samples[i % len(samples)].points + np.float32(0.01 * (c * CLOUDS_PER_CLIENT + i))
            path = root / f"client{c}_cloud{i}.npy"
            np.save(path, pts.astype(np.float32))
            files[c].append(path)
    return files


def _client(url: str, out: Path, files: list[Path]) -> subprocess.Popen[str]:
    code = "import sys; from align3d_rt.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code, "infer", "--triton", url, "--timeout", "120", "--out",
                             str(out), "--no-ply", *map(str, files)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_concurrent_clients_score_like_local_inference_and_the_encoder_batches(
        served: tuple[Server, dict[str, Path], float], tmp_path: Path, record_figure: Callable[[str], None]) -> None:
    import tritonclient.http as http

    server, tiny, start_seconds = served
    files = _clouds(tmp_path)
    outs = [tmp_path / "out_http", tmp_path / "out_grpc"]
    t0 = time.perf_counter()
    clients = [_client(server.http_url, outs[0], files[0]), _client(server.grpc_url, outs[1], files[1])]
    for proc in clients:
        try:
            _, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"client did not finish in 600 s\n{server.log()[-3000:]}")
        assert proc.returncode == 0, err[-2000:] + server.log()[-3000:]
    wall = time.perf_counter() - t0

    local = tmp_path / "out_local"
    assert main(["infer", "--bundle", str(tiny["fp32"]), "--backend", "onnxruntime", "--device", "cpu",
                 "--out", str(local), "--no-ply", *map(str, files[0] + files[1])]) == 0
    local_json = json.loads((local / "scores.json").read_text())
    latencies = []
    for out, client_files in zip(outs, files, strict=True):
        summary = json.loads((out / "scores.json").read_text())
        assert summary["detector"]["source"] == "triton" and not summary["failed"]
        for path in client_files:
            key = path.stem
            remote, mine = summary["samples"][key], local_json["samples"][key]
            np.testing.assert_allclose(np.load(out / f"{key}.scores.npy"),
                                       np.load(local / mine["outputs"]["scores"]), atol=1e-5, rtol=0)
            assert abs(remote["object_score"] - mine["object_score"]) <= 1e-5
            assert (out / f"{key}.png").is_file()
            latencies.append(remote["timings"]["request"])

    with http.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=30) as client:
        enc = client.get_inference_statistics("align3d_encoder")["model_stats"][0]
        pipe = client.get_inference_statistics("align3d")["model_stats"][0]
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in enc["batch_stats"]}
    served_requests = int(pipe["inference_stats"]["success"]["count"])
    figures = {
        "requests_served": served_requests,
        "encoder_executions_by_batch_size": batches,
        "encoder_inference_count": int(enc["inference_count"]),
        "encoder_execution_count": int(enc["execution_count"]),
        "client_latency_s": {"mean": round(statistics.mean(latencies), 3), "min": round(min(latencies), 3),
                             "max": round(max(latencies), 3)},
        "server_pipeline_latency_s": round(pipe["inference_stats"]["success"]["ns"] / 1e9 / served_requests, 3),
        "clients_wall_s": round(wall, 2),
        "server_start_s": round(start_seconds, 1),
    }
    record_figure(f"triton loopback figures: {json.dumps(figures)}")
    assert served_requests == 2 * CLOUDS_PER_CLIENT
    assert int(enc["inference_count"]) == 2 * CLOUDS_PER_CLIENT * VIEWS  # every view went through the encoder
    assert max(batches) > VIEWS, f"no encoder execution merged two requests: {batches}"
    assert int(enc["execution_count"]) < 2 * CLOUDS_PER_CLIENT


def test_a_cloud_the_server_rejects_is_that_files_failure(served: tuple[Server, dict[str, Path], float]) -> None:
    from align3d_rt.data.sample import PointCloudSample
    from align3d_rt.errors import InputError
    from align3d_rt.serving.triton_client import TritonScorer

    server = served[0]
    for url in (server.http_url, server.grpc_url):
        with TritonScorer(url, timeout=60) as detector:
            bad = PointCloudSample(points=np.array([[0, 0, np.nan], [1, 2, 3]], np.float32), source="bad.npy")
            result = detector.score_sample(bad)
            assert isinstance(result, InputError)
            assert str(result).startswith("bad.npy: the server refused the cloud") and "NaN" in str(result)
            good = PointCloudSample(points=np.random.default_rng(0).standard_normal((500, 3)).astype(np.float32))
            assert detector.score_sample(good).point_scores.shape == (500, 3)  # the server goes on


def test_wrong_model_name_is_one_line_exit_2(served: tuple[Server, dict[str, Path], float], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    server = served[0]
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32))
    for url in (server.http_url, server.grpc_url):
        assert main(["infer", "--triton", url, "--model", "nope", "--out", str(tmp_path / "o"), str(cloud)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"align3d-rt infer: error: {url}: no model 'nope' on the server (models: align3d, " \
                      f"align3d_encoder)"
        assert not (tmp_path / "o").exists()


def test_altered_bundle_copy_fails_the_model_load_and_the_client_says_not_ready(
        tampered: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundle copy is hash-checked when the server loads the pipeline model; the client names the state."""
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32))
    assert "sha256 differs from the manifest" in tampered.log()
    assert main(["infer", "--triton", tampered.http_url, "--out", str(tmp_path / "o"), str(cloud)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"align3d-rt infer: error: {tampered.http_url}: model 'align3d' is not ready (state "
                          f"UNAVAILABLE") and len(err.splitlines()) == 1, err
    assert "sha256 differs" in err and not (tmp_path / "o").exists()


def test_native_encoder_configs_pass_the_real_servers_parsing_up_to_the_backend_lookup(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """What can be checked of the native encoders here: the bundled server (Python backend only) reads each
    config.pbtxt, maps its platform/backend and stops only at the missing backend library; the pipelines load."""
    import shutil

    import tritonclient.http as http

    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.artifacts.engine_index import record_engine
    from align3d_rt.export.onnx_export import export_bundle

    tiny = session_tiny(tmp_path_factory.mktemp("tiny"))
    work = tmp_path_factory.mktemp("triton_native")
    trt = work / "b_trt"  # a placeholder plan indexed like a real engine: the config is what is checked
    shutil.copytree(tiny["fp32"], trt)
    (trt / "engines").mkdir()
    (trt / "engines" / "e.engine").write_bytes(b"placeholder plan")
    bundle = load_bundle(trt)
    record_engine(bundle, "e", {"file": "engines/e.engine", "gpu_name": "GPU", "tensorrt_version": "11", "min_batch": 1,
                                "opt_batch": 9, "max_batch": 18, "onnx_sha256": bundle.onnx_sha256},
                  ["engines/e.engine"])
    sources = {"onnx": tiny["fp32"], "openvino": export_bundle(tiny["run"], work / "b_ov", fmt="openvino"), "trt": trt}
    repos = []
    for name, src in sources.items():
        repos.append(work / f"repo_{name}")
        assert main(["export", "--format", "triton", "--bundle", str(src), "--out", str(repos[-1]),
                     "--triton-name", f"{name}_pipe", "--triton-pipeline-instances", "1"]) == 0
    extra = tuple(f"--model-repository={r}" for r in repos[1:]) + ("--exit-on-error=false",)
    server = start_server(repos[0], work, numba_cache=REPO / ".venv-triton" / "numba-cache", extra_args=extra,
                          wait_for="live")
    try:
        with http.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=30) as client:
            index = {m["name"]: m for m in client.get_model_repository_index()}
    finally:
        server.stop()
    for name, backend in (("onnx", "onnxruntime"), ("openvino", "openvino"), ("trt", "tensorrt")):
        assert index[f"{name}_pipe"]["state"] == "READY", index
        encoder = index[f"{name}_pipe_encoder"]
        assert encoder["state"] == "UNAVAILABLE"
        assert encoder["reason"].startswith(f"Invalid argument: unable to find backend library for backend "
                                            f"'{backend}'"), encoder
