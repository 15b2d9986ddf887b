"""pytest-benchmark: end-to-end throughput of every backend configuration of the registry (one benchmark each).

Each benchmark is ``Detector.score_stream`` at batch 1 over 3 generated Real3D-size clouds (112,896 points,
.pcd on disk) to written scores, after a warm-up: the FPS column of ``align3d-rt bench`` (same code,
``align3d_rt.eval.bench``). A row that cannot run here (no GPU, library missing) is skipped with its reason.

    .venv/bin/python -m pytest bench/test_bench_backends.py --benchmark-only [--clip ViT-L-14-336]
    .venv/bin/python -m pytest bench --benchmark-only --benchmark-autosave     # then --benchmark-compare
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from align3d_rt.eval.bench import rows as rowlib
from align3d_rt.eval.bench.inputs import CloudSet, generate_real3d
from align3d_rt.eval.bench.measure import stream_pass, warm_up
from align3d_rt.runtime.devices import cuda_available

N_CLOUDS = 3
ROUNDS = 3


def _rows() -> list[rowlib.Row]:
    return [r for r in rowlib.all_rows("cpu", cuda_available(), None) if r.source != "inspector"]


@pytest.fixture(scope="module")
def clouds(bench_workdir: Path) -> CloudSet:
    return generate_real3d(bench_workdir / "clouds" / "real3d", N_CLOUDS)


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r.row_id)
def test_backend_throughput(benchmark: Any, row: rowlib.Row, clouds: CloudSet, bench_workdir: Path,
                            bench_clip: str) -> None:
    if row.skip_reason:
        pytest.skip(row.skip_reason)
    detector, prep = rowlib.build_detector(row, bench_workdir, bench_clip, None)
    out = bench_workdir / "outputs" / row.row_id.replace(":", "_")
    with detector:
        warm_up(detector, [clouds], out / "warmup")
        result = benchmark.pedantic(stream_pass, args=(detector, clouds, out / "stream", 1), rounds=ROUNDS,
                                    iterations=1)
        info = detector.describe()
    assert result["samples"] == N_CLOUDS
    for _, key in clouds.files:
        scores = np.load(out / "stream" / f"{key}.scores.npy")
        assert scores.shape == (112_896, 3) and np.isfinite(scores).all()
    benchmark.extra_info.update({"clip": bench_clip, "row": row.row_id, "device": row.device,
                                 "compute_precision": info.get("compute_precision", row.precision),
                                 "fps": result["fps"], "export_s": prep.get("export_s", 0.0)})
