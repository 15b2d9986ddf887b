"""The numba.cuda splat renderer agrees with the CPU one (run under NUMBA_ENABLE_CUDASIM=1, tiny sizes)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from align3d_rt.render.camera import view_rotations
    from align3d_rt.render.splat import render_splat
    from align3d_rt.render.splat_cuda import render_splat_cuda
    from align3d_rt.render.views import RenderSettings

    rng = np.random.default_rng(0)
    u, v = np.meshgrid(np.linspace(-1, 1, 13), np.linspace(-1, 1, 13))
    surface = np.stack([u.ravel(), v.ravel(), 0.3 * np.sin(2 * u.ravel()) * np.cos(v.ravel())], 1)
    pts = np.concatenate([surface, rng.normal(size=(60, 3)) * 0.4]).astype(np.float32)  # occluders too
    rots = view_rotations(RenderSettings(preset="mvtec9"))[[0, 6]]
    colors = rng.random((len(pts), 3)).astype(np.float32)
    labels = (rng.random(len(pts)) < 0.2).astype(np.uint8)
    cpu = render_splat(pts, rots, 16, 64, 8, 0.7, colors, labels)
    gpu = render_splat_cuda(pts, rots, 16, 64, 8, 0.7, colors, labels)
    for key in ("pixels", "visible", "images", "rgb", "gt"):
        assert cpu[key].shape == gpu[key].shape, key
        assert np.array_equal(cpu[key], gpu[key]), key
    assert cpu["visible"].sum() > 0 and (cpu["images"] < 255).any() and cpu["gt"].any()
    print("CUDASIM-AGREE", int(cpu["visible"].sum()))
    """
)


def test_cuda_kernels_match_cpu_under_simulator() -> None:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CUDASIM-AGREE" in proc.stdout
