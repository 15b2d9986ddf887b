"""MVTec preprocessing's DBSCAN step: our exact organized-grid path (data/dbscan_grid.py, the default for
every scan since PREPROCESS_VERSION 2) vs Open3D's cluster_dbscan (the previous route), in one run.

Each measurement runs in a fresh child process (this script with ``--child``), so the peak memory of
one path does not hide the other's: the child reports its wall time for the largest-cluster mask and
its peak RSS above its RSS after the imports (both children import numpy and Open3D). Rounds are
round-robin (grid, Open3D, grid, Open3D, ...), and each round's ratio compares two back-to-back calls.
Cases: a dense scan (300x300 grid, 0.25 mm pixels) and a sparse one (200x200, 1.5 mm, where Open3D's
short neighbour lists made it the faster route before). The two masks must be equal.

    .venv/bin/python bench/bench_dbscan.py [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CASES = {"dense 300x300 @ 0.25 mm": (300, 0.00025), "sparse 200x200 @ 1.5 mm": (200, 0.0015)}


def scan(n: int, pixel: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A generated organized scan: a wavy surface with a step, a raised block, noise and holes."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:n, 0:n].astype(np.float64) * pixel
    z = 0.3 + 0.004 * np.sin(u * 50)
    z[:, n // 3: n // 3 + 4] += 0.03
    z[n // 2:, 2 * n // 3:] += 0.012
    xyz = np.stack([u, v, z], -1)
    noise = rng.random((n, n)) < 0.01
    xyz[noise] += rng.normal(0, 0.03, (int(noise.sum()), 3))
    return xyz.astype(np.float32), rng.random((n, n)) > 0.05


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def child(path: str, n: int, pixel: float, out: str) -> None:
    import open3d  # noqa: F401 - the same imports in both children

    from align3d_rt.data import mvtec3d
    from align3d_rt.data.dbscan_grid import largest_cluster_grid

    xyz, valid = scan(n, pixel)
    base = _rss_mb()
    t0 = time.perf_counter()
    if path == "grid":
        mask = largest_cluster_grid(xyz, valid, mvtec3d.DBSCAN_EPS, mvtec3d.DBSCAN_MIN_POINTS)
    else:
        mask = mvtec3d.largest_cluster_open3d(xyz, valid)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out, mask)
    print(json.dumps({"seconds": seconds, "peak_above_imports_mb": peak - base, "points": int(valid.sum())}))


def measure(path: str, n: int, pixel: float, mask_file: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--child", path, str(n), str(pixel), str(mask_file)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        path, n, pixel, out = args.child
        child(path, int(n), float(pixel), out)
        return 0
    import os
    import tempfile

    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (n, pixel) in CASES.items():
            runs: dict[str, list[dict[str, float]]] = {"grid": [], "open3d": []}
            for _ in range(args.rounds):
                for path in runs:
                    runs[path].append(measure(path, n, pixel, Path(tmp) / f"{path}.npy"))
            same = bool(np.array_equal(np.load(Path(tmp) / "grid.npy"), np.load(Path(tmp) / "open3d.npy")))
            per_round = [o["seconds"] / g["seconds"] for g, o in zip(runs["grid"], runs["open3d"], strict=True)]
            row = {"points": runs["grid"][0]["points"], "same_mask": same, "load_avg_1m": os.getloadavg()[0],
                   "open3d_over_grid_time": statistics.median(per_round), "per_round": per_round}
            for path, rs in runs.items():
                row[f"{path}_s"] = statistics.median(r["seconds"] for r in rs)
                row[f"{path}_peak_mb"] = statistics.median(r["peak_above_imports_mb"] for r in rs)
            result[name] = row
            print(f"{name} ({row['points']} points, same mask: {same}, load {row['load_avg_1m']:.1f}): "
                  f"grid {row['grid_s']:.2f} s / {row['grid_peak_mb']:.0f} MB, "
                  f"open3d {row['open3d_s']:.2f} s / {row['open3d_peak_mb']:.0f} MB; Open3D time / grid time "
                  f"{row['open3d_over_grid_time']:.2f} (rounds {min(per_round):.2f}-{max(per_round):.2f}); "
                  f"Open3D peak / grid peak {row['open3d_peak_mb'] / max(row['grid_peak_mb'], 1e-9):.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
