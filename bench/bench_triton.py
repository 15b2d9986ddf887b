"""Serving cost and batching gain of the Triton repository, in one run: local inference vs one Triton client vs
two concurrent Triton clients, on the same clouds.

The server is the tritonserver nvidia-pytriton bundles (``.venv-triton``, scripts/setup.sh) on the repository
``export --format triton --triton-encoder python`` writes for a tiny random CLIP bundle, started on free
loopback ports (tests/triton_server.py). Product defaults: 1 encoder instance, 2 pipeline instances, queue
delay 2000 us. After one warm-up pass of each mode, rounds run the three modes round-robin over the same
clouds; each mode's time is the wall time for all clouds. Ratios are of the medians of this one run; the
encoder batch sizes come from the server's statistics.

    .venv/bin/python bench/bench_triton.py [--clouds 8] [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the loopback server starter the tests use

from triton_server import start_server  # noqa: E402


def _clouds(work: Path, n: int) -> list[Any]:
    from align3d_rt.cli.parity import load_data
    from align3d_rt.data.synthetic import generate_mvtec_layout

    root = generate_mvtec_layout(work / "data", categories=["dome"], n_train=0, n_validation=0,
                                 n_test_good=max(1, n - 2), n_per_defect=1, defects=["bump", "hole"], size=(120, 120))
    return load_data([root], dataset="synthetic", categories=["dome"], max_samples=n)


def _score_all(detector: Any, samples: list[Any]) -> list[Any]:
    return [detector.score_sample(s) for s in samples]


def _two_clients(url: str, samples: list[Any]) -> tuple[float, list[Any]]:
    """Wall time for two concurrent clients, each sending every other cloud; the results in cloud order."""
    from align3d_rt.serving.triton_client import TritonScorer

    results: list[Any] = [None] * len(samples)

    def client(part: int) -> None:
        with TritonScorer(url) as det:
            for i in range(part, len(samples), 2):
                results[i] = det.score_sample(samples[i])

    threads = [threading.Thread(target=client, args=(p,)) for p in (0, 1)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results


def measure(n_clouds: int, rounds: int) -> dict[str, Any]:
    import tritonclient.http as http

    from align3d_rt.cli import main
    from align3d_rt.runtime.detector import Detector
    from align3d_rt.serving.triton_client import TritonScorer
    from align3d_rt.train.random_run import random_run_dir

    with tempfile.TemporaryDirectory() as tmp_name:
        work = Path(tmp_name)
        run = random_run_dir(work / "run", preset="paper9")
        bundle, repo = work / "bundle", work / "repo"
        assert main(["export", "--run", str(run), "--out", str(bundle), "--precision", "fp32"]) == 0
        assert main(["export", "--format", "triton", "--bundle", str(bundle), "--out", str(repo),
                     "--triton-encoder", "python"]) == 0
        samples = _clouds(work, n_clouds)
        server = start_server(repo, work, numba_cache=REPO / ".venv-triton" / "numba-cache")
        try:
            with Detector.from_bundle(bundle, backend="onnxruntime", device="cpu") as local, \
                    TritonScorer(server.http_url) as remote:
                def local_run() -> tuple[float, list[Any]]:
                    t0 = time.perf_counter()
                    out = [local.score_one(s, keep_render=False) for s in samples]
                    return time.perf_counter() - t0, out

                def one_client() -> tuple[float, list[Any]]:
                    t0 = time.perf_counter()
                    out = _score_all(remote, samples)
                    return time.perf_counter() - t0, out

                modes = {"local": local_run, "triton_1_client": one_client,
                         "triton_2_clients": lambda: _two_clients(server.http_url, samples)}
                expected = local_run()[1]  # warm-up of every mode, and the equality check
                for fn in modes.values():
                    _, got = fn()
                    for a, b in zip(expected, got, strict=True):
                        assert np.abs(a.point_scores - b.point_scores).max() <= 1e-5, "Triton scores differ from local"
                times: dict[str, list[float]] = {k: [] for k in modes}
                for _ in range(rounds):
                    for name, fn in modes.items():
                        times[name].append(fn()[0])
            with http.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=30) as client:
                enc = client.get_inference_statistics("align3d_encoder")["model_stats"][0]
            batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in enc["batch_stats"]}
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "clouds": n_clouds, "rounds": rounds, "seconds": times, "median_s": med,
        "per_cloud_s": {k: v / n_clouds for k, v in med.items()},
        "triton_1_client_vs_local": med["triton_1_client"] / med["local"],
        "triton_2_clients_vs_1_client": med["triton_2_clients"] / med["triton_1_client"],
        "encoder_executions_by_batch_size": batches,
    }


def main_cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clouds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = measure(args.clouds, args.rounds)
    print(f"{args.clouds} clouds, tiny CLIP, python encoder, {args.rounds} rounds (wall time for all clouds)")
    for name in ("local", "triton_1_client", "triton_2_clients"):
        v = res["seconds"][name]
        print(f"  {name:18s} median {res['median_s'][name]:6.2f} s  (rounds {min(v):.2f}-{max(v):.2f} s)")
    print(f"  Triton, 1 client / local:      {res['triton_1_client_vs_local']:.2f}x wall time")
    print(f"  Triton, 2 clients / 1 client:  {res['triton_2_clients_vs_1_client']:.2f}x wall time")
    print(f"  encoder executions by batch size: {res['encoder_executions_by_batch_size']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main_cli()
