"""One ov.Core per process (``loaders.openvino_core``): releasing Cores must never leave the main thread's
signal stack dangling, or the next SIGTERM / Ctrl-C kills the process with SIGSEGV and no traceback.

The CI crash of stop 24 (exit 139 in ``test_eval_terminated_after_a_class_says_interrupted``, no
faulthandler output, the kernel's SIGSEGV with si_code SI_KERNEL while ``os.kill`` delivered SIGTERM) came
from OpenVINO's CPU plugin: each Core swaps the creating thread's sigaltstack and unmaps its own on release.
The checks run in fresh interpreters: a crash there is a failed test, not a dead test run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed")

ROOT = Path(__file__).resolve().parents[1]

# Two compiled models made through the loaders, released in the order they were made (the order that
# left a dangling signal stack when each had its own Core), then SIGTERM handled on the main thread.
COMPILE_TWICE_THEN_SIGTERM = """
import os, signal, sys
import numpy as np
import openvino as ov
import openvino.opset13 as ops
from align3d_rt.loaders import OpenVinoCompiler

def tiny_model():
    x = ops.parameter([1, 4], np.float32, name="x")
    return ov.Model([ops.relu(x)], [x], "tiny")

handled = []
signal.signal(signal.SIGTERM, lambda signum, frame: handled.append(signum))
first = OpenVinoCompiler(tiny_model(), precision_hint="f32")()
second = OpenVinoCompiler(tiny_model(), precision_hint="f32")()
out = second.model.create_infer_request().infer({0: np.array([[-1, 2, -3, 4]], np.float32)})
assert list(next(iter(out.values())).ravel()) == [0, 2, 0, 4]
del first
del second
os.kill(os.getpid(), signal.SIGTERM)
print("handled" if handled == [signal.SIGTERM] else f"not handled: {handled}")
"""


def _run(script: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_sigterm_after_releasing_compiled_models_is_handled_not_a_segfault() -> None:
    proc = _run(COMPILE_TWICE_THEN_SIGTERM)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip().splitlines()[-1] == "handled"


def test_every_compile_shares_the_process_core() -> None:
    from align3d_rt.loaders import openvino_core

    assert openvino_core() is openvino_core()
    proc = _run("import align3d_rt.loaders as L\n"
                "import openvino as ov\n"
                "made = []\n"
                "real = ov.Core\n"
                "ov.Core = lambda *a: made.append(1) or real(*a)\n"
                "L.openvino_core(); L.openvino_core()\n"
                "from align3d_rt.export.openvino_export import compute_precision_on_this_cpu\n"
                "compute_precision_on_this_cpu()\n"
                "print(len(made))\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "1"
