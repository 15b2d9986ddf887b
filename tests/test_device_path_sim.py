"""The whole device path (CUDA render -> device runner -> CUDA back-projection) equals the CPU path.

Runs under NUMBA_ENABLE_CUDASIM=1 in a child process, on tiny images (the simulator costs about
0.15 ms per simulated thread).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import numpy as np
    from numba import cuda

    from align3d_rt.render.views import RenderSettings
    from align3d_rt.runtime import arrays
    from align3d_rt.runtime.base import BaseRunner, EncoderOutput
    from align3d_rt.runtime.detector import Detector
    from infer_eval_support import bump_cloud, fake_maps

    GRID = 4


    class HostFake(BaseRunner):
        name = "fake-host"
        grid_size = GRID

        def _infer_impl(self, views):
            return fake_maps(np.asarray(views), GRID)


    class DeviceFake(BaseRunner):
        name = "fake-device"
        grid_size = GRID

        def __init__(self):
            super().__init__(device="cuda")
            self.inputs_on_device = []

        def _infer_impl(self, views):
            self.inputs_on_device.append(arrays.is_device(views))
            out = fake_maps(views.copy_to_host(), GRID)
            return EncoderOutput(cuda.to_device(out.patch_maps), cuda.to_device(out.global_probs))


    settings = RenderSettings(preset="mvtec9", image_size=16, window=64, point_size=8)
    samples = [bump_cloud(9, seed=1), bump_cloud(7, seed=2)]
    for s in samples:
        s.dataset = ""  # keep the tiny settings
    cpu = Detector(HostFake, settings, 0.4, "fake", device="cpu")
    with cpu:
        ref = cpu.score(samples, keep_render=False)
    runner = DeviceFake()
    gpu = Detector(lambda: runner, settings, 0.4, "fake", device="cuda")
    with gpu:
        got = [r for _, r in gpu.score_stream(samples, batch_size=2)]
    assert runner.inputs_on_device == [True], runner.inputs_on_device  # one batch, views never left the device
    for a, b in zip(ref, got):
        assert isinstance(b.point_scores, np.ndarray) and b.point_scores.shape == a.point_scores.shape
        assert arrays.is_device(b.maps)  # maps stay on the device until asked for
        np.testing.assert_allclose(b.point_scores, a.point_scores, atol=1e-5, rtol=0)
        assert abs(b.object_score - a.object_score) < 1e-5
        np.testing.assert_allclose(b.view_maps, a.view_maps, atol=1e-6)
        assert (a.point_scores[:, 2] > 0).any()
    print("DEVICE-PATH-EQUAL", sum(len(r.point_scores) for r in got))
""")


def test_device_path_equals_cpu_path_under_simulator() -> None:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]))
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "DEVICE-PATH-EQUAL 130" in res.stdout
