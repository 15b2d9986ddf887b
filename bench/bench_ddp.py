"""Training wall time: one process vs ``torchrun --standalone --nproc-per-node N`` on the same run settings.

Generated category (MVTec layout), tiny random CLIP by default, one thread per process (OMP_NUM_THREADS=1,
as torchrun sets it). Each command is timed end to end (interpreter start, CLIP load, feature cache,
stage 1, stage 2, run directory), since that is what a user waits for. The feature cache is warmed once
before timing (``--cold`` times a fresh cache per command instead, which adds sharded rendering + encoding).
Rounds alternate single and multi-process runs so background load hits both alike; the ratio is of the
medians of one run of this script.

    .venv/bin/python bench/bench_ddp.py [--nproc 2] [--rounds 3] [--epochs1 10] [--epochs2 5] [--cold] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _train_args(root: Path, clip: str, epochs1: int, epochs2: int, image_size: int, batch_size: int) -> list[str]:
    return ["train", "--dataset", "synthetic", "--root", str(root), "--category", "dome", "--clip", clip,
            "--epochs1", str(epochs1), "--reweight-epochs", "1", "--epochs2", str(epochs2), "--dpca-epochs", "1",
            "--image-size", str(image_size), "--batch-size", str(batch_size), "--no-progress"]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}...: failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return took


def measure(nproc: int, rounds: int, epochs1: int, epochs2: int, samples: int, image_size: int, batch_size: int,
            clip: str, cold: bool) -> dict:
    from align3d_rt.data.synthetic import generate_mvtec_layout

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = generate_mvtec_layout(tmp / "data", categories=["dome"], n_train=0, n_validation=0,
                                     n_test_good=max(1, samples - 5), n_per_defect=1, seed=0)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
               "ALIGN3D_CACHE": str(tmp / "cache")}
        args = _train_args(root, clip, epochs1, epochs2, image_size, batch_size)
        single = [sys.executable, "-m", "align3d_rt"]
        multi = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(nproc), "-m", "align3d_rt", "--"]
        if not cold:
            _timed([*single, *args, "--out", str(tmp / "warmup")], env)
        times: dict[str, list[float]] = {"single": [], "multi": []}
        for r in range(rounds):
            for kind, prefix in (("single", single), ("multi", multi)):
                run_env = dict(env, ALIGN3D_CACHE=str(tmp / f"cache_{kind}_{r}")) if cold else env
                times[kind].append(_timed([*prefix, *args, "--out", str(tmp / f"{kind}_{r}")], run_env))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"nproc": nproc, "rounds": rounds, "clip": clip, "samples": samples, "image_size": image_size,
            "batch_size": batch_size, "epochs1": epochs1, "epochs2": epochs2, "cache": "cold" if cold else "warm",
            "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0], "times_s": times, "median_s": med,
            "multi_over_single": med["multi"] / med["single"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs1", type=int, default=10)
    p.add_argument("--epochs2", type=int, default=5)
    p.add_argument("--samples", type=int, default=7)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--clip", default="align3d-tiny")
    p.add_argument("--cold", action="store_true", help="a fresh feature cache for every timed command")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = p.parse_args(argv)
    r = measure(a.nproc, a.rounds, a.epochs1, a.epochs2, a.samples, a.image_size, a.batch_size, a.clip, a.cold)
    print(f"train, {r['samples']} samples, {r['epochs1']}+{r['epochs2']} epochs, batch {r['batch_size']}, "
          f"{r['clip']}, {r['cache']} feature cache, {r['cpus']} CPUs, load {r['load_avg']:.2f} at the end")
    for kind, label in (("single", "1 process"), ("multi", f"torchrun {r['nproc']} processes")):
        ts = r["times_s"][kind]
        print(f"  {label:22s} median {r['median_s'][kind]:6.1f} s  (rounds {min(ts):.1f}-{max(ts):.1f} s)")
    print(f"  {r['nproc']} processes / 1 process: {r['multi_over_single']:.2f}x wall time")
    if a.json is not None:
        a.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
