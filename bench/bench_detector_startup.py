"""Python start-up A/B: two source trees (e.g. two commits) load one bundle, alternating, in one run.

Each measurement is a fresh process (``python -c PROBE`` with ``PYTHONPATH=TREE``) that times

- ``import_s``: importing ``align3d_rt.runtime.detector``;
- ``from_bundle_s``: ``Detector.from_bundle(BUNDLE, backend=...)`` (manifest, file hashes; on the OpenVINO
  route of trees with deferred hashing also the IR compile, spec 2.4);
- ``ready_s``: from the start of ``from_bundle`` until the runner is active (``detector.runner``), which is
  what a process pays before its first score;

and the parent times the whole process (``process_s``). Rounds alternate A,B then B,A; round 0 is a
warm-up (page cache, OpenVINO's compile cache under a shared ``ALIGN3D_CACHE``) and is not counted.
Reported: median and range per side, and the per-round ratio A/B (> 1: B is faster).

    python bench/bench_detector_startup.py --bundle B --tree-a OLD --tree-b NEW [--rounds 7] [--backend openvino]
        [--json out.json] [--md out.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROBE = """
import json, sys, time
t0 = time.perf_counter()
from align3d_rt.runtime.detector import Detector
t1 = time.perf_counter()
det = Detector.from_bundle(sys.argv[1], backend=sys.argv[2])
t2 = time.perf_counter()
det.runner
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "from_bundle_s": t2 - t1, "ready_s": t3 - t1,
                  "compute_precision": det.info.get("compute_precision")}))
"""
FIGURES = ("ready_s", "from_bundle_s", "import_s", "process_s")


def measure(tree: Path, bundle: Path, backend: str, env: dict[str, str]) -> dict[str, Any]:
    """One fresh process of ``tree`` loading ``bundle``; its figures."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, str(bundle), backend], capture_output=True, text=True,
                          cwd=tree, env={**env, "PYTHONPATH": str(tree)}, timeout=600, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: probe failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


def run(trees: dict[str, Path], bundle: Path, backend: str, rounds: int) -> dict[str, Any]:
    cache = Path(tempfile.mkdtemp(prefix="align3d-startup-cache-"))
    env = {**os.environ, "ALIGN3D_CACHE": str(cache)}
    per_round: list[dict[str, dict[str, Any]]] = []
    for r in range(rounds + 1):
        order = "AB" if r % 2 == 0 else "BA"
        got = {side: measure(trees[side], bundle, backend, env) for side in order}
        print(f"round {r}{' (warm-up)' if r == 0 else ''}: " + ", ".join(
            f"{side} ready {got[side]['ready_s']:.3f} s process {got[side]['process_s']:.3f} s" for side in "AB"),
            file=sys.stderr, flush=True)
        if r:
            per_round.append(got)
    summary: dict[str, Any] = {}
    for fig in FIGURES:
        sides = {side: [float(g[side][fig]) for g in per_round] for side in "AB"}
        ratios = [a / b for a, b in zip(sides["A"], sides["B"], strict=True) if b > 0]
        summary[fig] = {**{side: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                           for side, v in sides.items()},
                        "ratio_a_over_b": {"median": statistics.median(ratios), "min": min(ratios),
                                           "max": max(ratios)}}
    return {"bundle": str(bundle), "backend": backend, "trees": {k: str(v) for k, v in trees.items()},
            "rounds": rounds, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "compute_precision": per_round[-1]["B"].get("compute_precision"),
            "summary": summary, "per_round": per_round}


def markdown(res: dict[str, Any], title: str) -> str:
    lines = [f"### {title}", "",
             f"Bundle `{res['bundle']}`, backend {res['backend']} ({res['compute_precision']} compute), "
             f"{res['rounds']} rounds after a warm-up, alternating A,B / B,A, one fresh process each; "
             f"{res['cpus']} logical CPUs, load average at the end {res['load_average'][0]:.2f}.", "",
             f"- A: `{res['trees']['A']}`", f"- B: `{res['trees']['B']}`", "",
             "| figure | A median (range) s | B median (range) s | A/B per round: median (range) |",
             "|---|---:|---:|---:|"]
    for fig, s in res["summary"].items():
        a, b, q = s["A"], s["B"], s["ratio_a_over_b"]
        lines.append(f"| {fig} | {a['median']:.3f} ({a['min']:.3f}-{a['max']:.3f}) | "
                     f"{b['median']:.3f} ({b['min']:.3f}-{b['max']:.3f}) | "
                     f"{q['median']:.2f}x ({q['min']:.2f}-{q['max']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--tree-a", type=Path, required=True, help="source tree A (e.g. a worktree of the old commit)")
    ap.add_argument("--tree-b", type=Path, required=True, help="source tree B")
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--title", default="Python detector start-up, A/B")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    trees = {"A": args.tree_a.resolve(), "B": args.tree_b.resolve()}
    res = run(trees, args.bundle.resolve(), args.backend, args.rounds)
    text = markdown(res, args.title)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
