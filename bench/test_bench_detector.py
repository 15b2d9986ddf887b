"""pytest-benchmark: Detector.score_stream end to end (files on disk -> written .npy scores), align3d-tiny.

The same path as bench/bench_detector_throughput.py on a small case: 4 height-field clouds (128x128 grid
cut to a disc, ~12.6k points) as .npy files, an int8 ONNX Runtime bundle of align3d-tiny with random
weights (exported once per module, ~15 s), score_stream at batch 1 with the outputs written.

    .venv/bin/python -m pytest bench/test_bench_detector.py --benchmark-only
    .venv/bin/python -m pytest bench --benchmark-only        # every pytest-benchmark file under bench/
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_detector_throughput as bdt

N_CLOUDS = 4
SIDE = 128
ROUNDS = 3
Case = tuple[Any, list[tuple[Path, str]], Path]  # (detector, clouds, output folder)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    pytest.importorskip("onnxruntime")
    from align3d_rt.runtime.detector import Detector

    work = tmp_path_factory.mktemp("bench_detector")
    files = bdt.write_clouds(work / "clouds", N_CLOUDS, side=SIDE)
    bundle, _, _ = bdt.ensure_bundle(None, work, "align3d-tiny", "int8")
    detector = Detector.from_bundle(bundle, device="cpu")
    with detector:
        warm = bdt.run_stream(detector, files[:1], work / "out_warmup", 1)  # kernels, session, writing
        assert warm["scored"] == 1, warm["failed"]
        yield detector, files, work / "out"


def test_score_stream_end_to_end(benchmark: Any, case: Case) -> None:
    detector, files, out = case
    result = benchmark.pedantic(bdt.run_stream, args=(detector, files, out, 1), rounds=ROUNDS, iterations=1)
    assert result["failed"] == {}
    assert result["scored"] == N_CLOUDS
    assert result["finite"]
    for _path, key in files:
        scores = np.load(out / f"{key}.scores.npy")
        points = np.load(out / f"{key}.points.npy")
        assert scores.shape == (points.shape[0], 3) and scores.dtype == np.float32
        assert np.isfinite(scores).all()
    benchmark.extra_info.update({"clouds": N_CLOUDS, "points_per_cloud": int(points.shape[0]),
                                 "per_sample_s": result["wall_s"] / N_CLOUDS,
                                 "stages_mean_s": result["stages_mean_s"]})
