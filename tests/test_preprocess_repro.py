"""Issue #21 "same scan, same answer": MVTec preprocessing (spec §4.2) is a function of the file alone.

Our seeded RANSAC (data/plane_ransac.py) and exact DBSCAN (data/dbscan_grid.py) replace Open3D's
multi-threaded ``segment_plane``/``cluster_dbscan``: separate processes with different thread settings
give bit-identical grids, the RNG and sampling follow the spec's sequential definition, and the plane
found is the planted one (the cells removed equal the previous Open3D route's up to a few at the 5 mm edge).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.data import grid as gridlib
from align3d_rt.data import mvtec3d, plane_ransac
from align3d_rt.data.synthetic import render_mvtec_sample

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import hashlib, sys
from align3d_rt.data import mvtec3d
grid, _ = mvtec3d.preprocessed_grid(sys.argv[1], use_cache=False)
print(hashlib.sha256(grid.tobytes()).hexdigest())
"""


def _scan(category: str, defect: str | None, size: tuple[int, int], seed: int) -> np.ndarray:
    xyz, _, _ = render_mvtec_sample(category, defect, size, np.random.default_rng(seed))
    return xyz


def _splitmix64_reference(seed: int, count: int) -> list[int]:
    state, out, mask = seed, [], (1 << 64) - 1
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


def _digests_of_separate_processes(tmp_path: Path, processes: int) -> tuple[str, list[str]]:
    """(in-process digest, one digest per child process) of the preprocessed grid of one generated scan
    with a background plane; child i runs with 1 + i % 4 threads for numba, OpenMP and BLAS."""
    import tifffile

    tiff = tmp_path / "scan.tiff"
    tifffile.imwrite(tiff, _scan("ring", "hole", (140, 160), 3))
    expected = hashlib.sha256(mvtec3d.preprocessed_grid(tiff, use_cache=False)[0].tobytes()).hexdigest()

    def run(i: int) -> str:
        threads = str(1 + i % 4)
        env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        done = subprocess.run([sys.executable, "-c", CHILD, str(tiff)], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    with ThreadPoolExecutor(2) as pool:
        return expected, list(pool.map(run, range(processes)))


@pytest.mark.heavy
def test_twenty_processes_with_different_thread_counts_give_identical_grids(tmp_path: Path) -> None:
    """The issue's check (~1 s per process: 30 s on a loaded 2-vCPU machine, hence heavy)."""
    expected, digests = _digests_of_separate_processes(tmp_path, 20)
    assert digests == [expected] * 20


def test_four_processes_with_one_to_four_threads_give_identical_grids(tmp_path: Path) -> None:
    expected, digests = _digests_of_separate_processes(tmp_path, 4)
    assert digests == [expected] * 4


def test_splitmix64_and_sampling_follow_the_sequential_definition() -> None:
    got = plane_ransac.splitmix64(0, 1000)
    assert [int(v) for v in got] == _splitmix64_reference(0, 1000)
    assert int(got[0]) == 0xE220A8397B1DCDAF  # splitmix64's published first output for seed 0
    m, n, iterations = 37, 10, 40
    draws = _splitmix64_reference(0, n * iterations)
    ref = []
    for t in range(iterations):  # partial Fisher-Yates on a fresh identity permutation
        perm = list(range(m))
        for i in range(n):
            j = i + draws[t * n + i] % (m - i)
            perm[i], perm[j] = perm[j], perm[i]
        ref.append(perm[:n])
    idx = plane_ransac.sample_indices(m, n, iterations)
    np.testing.assert_array_equal(idx, np.array(ref))
    assert all(len(set(row)) == n for row in idx.tolist())


def test_plane_fit_is_the_least_squares_plane_of_its_points() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.05, 0.05, (400, 2))
    pts = np.c_[xy, 0.3 + 0.1 * xy[:, 0] - 0.05 * xy[:, 1] + rng.normal(0, 1e-4, 400)]
    plane, ok = plane_ransac.plane_from_samples(pts)
    assert ok
    centred = pts - pts.mean(axis=0)
    normal = np.linalg.svd(centred)[2][-1]  # smallest singular vector: the total-least-squares normal
    assert abs(abs(float(plane[:3] @ normal)) - 1.0) < 1e-9
    assert abs(np.linalg.norm(plane[:3]) - 1.0) < 1e-12
    flat, ok = plane_ransac.plane_from_samples(np.ones((5, 3)))
    assert not ok  # identical points span no plane


@pytest.mark.parametrize("category, size, seed", [("dome", (200, 220), 0), ("wave", (150, 260), 2),
                                                  ("box", (300, 300), 5)])
def test_ransac_finds_the_planted_plane(category: str, size: tuple[int, int], seed: int) -> None:
    """The generated background is z = PLANE_DEPTH + tx·x + ty·y (+ 0.1 mm noise): the fit recovers it, and it
    removes the cells the previous Open3D route removed (all, or all but a few at the 5 mm boundary)."""
    xyz = _scan(category, None, size, seed)
    valid = gridlib.valid_mask(xyz)
    border = mvtec3d._border_points(xyz, valid)
    plane = plane_ransac.fit_plane(border, mvtec3d.PLANE_FIT_THRESHOLD,
                                   mvtec3d.PLANE_RANSAC_N, mvtec3d.PLANE_ITERATIONS)
    assert plane is not None
    residual = np.abs(border @ plane[:3] + plane[3])
    assert np.mean(residual < 4e-4) > 0.9  # the border band (mostly background, 0.1 mm noise) lies on the plane
    ours = mvtec3d.remove_plane(xyz, valid)
    assert 0.2 * valid.sum() < ours.sum() < 0.8 * valid.sum()  # background gone, object kept
    differ = (ours != mvtec3d.remove_plane_open3d(xyz, valid)).reshape(-1)
    # Open3D's multi-threaded RANSAC is not reproducible (2 to 9 differing cells seen under load), so the check is
    # where they differ, not how many: only cells within 0.1 mm (the background noise) of the 5 mm removal distance.
    points = xyz.reshape(-1, 3)[differ].astype(np.float64)
    to_ours = np.abs(points @ plane[:3] + plane[3]) / np.linalg.norm(plane[:3])
    assert np.all(np.abs(to_ours - mvtec3d.PLANE_REMOVE_DISTANCE) < 1e-4), to_ours
    assert differ.sum() < 1e-3 * valid.sum()


def test_fit_plane_skips_too_few_or_degenerate_points() -> None:
    assert plane_ransac.fit_plane(np.zeros((49, 3)), 0.004, 50, 10) is None
    assert plane_ransac.fit_plane(np.ones((80, 3)), 0.004, 50, 10) is None


def test_far_coordinates_are_refused() -> None:
    from align3d_rt.errors import Align3DError

    xyz = _scan("dome", None, (60, 60), 1)
    xyz[30, 30] = (2000.0, 0.0, 0.3)
    with pytest.raises(Align3DError, match="beyond \\+-1000 m"):
        mvtec3d.preprocess_xyz(xyz, source="far.tiff")
