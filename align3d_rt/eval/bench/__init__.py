"""The benchmark harness behind ``align3d-rt bench``: the paper's time / FPS / memory table for every
registered backend, end to end (files on disk -> written scores), with the stage split."""
from align3d_rt.eval.bench.run import BenchConfig, plan, run_bench

__all__ = ["BenchConfig", "plan", "run_bench"]
