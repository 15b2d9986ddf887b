"""The CUDA back-projection kernel equals the CPU kernel (run under NUMBA_ENABLE_CUDASIM=1)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from align3d_rt.kernels import backproject, backproject_cuda

    rng = np.random.default_rng(3)
    b, v, n, g, s = 2, 3, 9, 4, 12
    maps = rng.random((b, v, 2, g, g), dtype=np.float32)
    pixels = rng.integers(0, s, (b, v, n, 2)).astype(np.int32)
    pixels[:, :, 0] = (0, s - 1)
    pixels[:, :, 1] = (s - 1, 0)
    visible = rng.random((b, v, n)) < 0.5
    visible[:, :, 0] = True
    visible[:, :, 1] = False
    visible[:, :, 2] = False
    visible[:, 1, 2] = True
    cpu = backproject(maps, pixels, visible, image_size=s, fusion_weight=0.4)

    host = backproject_cuda(maps[:, ::-1].copy()[:, ::-1], pixels, visible, image_size=s, fusion_weight=0.4)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32 and host.shape == (b, n, 3)
    np.testing.assert_allclose(host, cpu, atol=1e-6, rtol=0)
    assert np.all(host[:, 1] == 0)

    dev = backproject_cuda(cuda.to_device(maps), cuda.to_device(pixels), cuda.to_device(visible),
                           image_size=s, fusion_weight=0.4)
    assert cuda.devicearray.is_cuda_ndarray(dev) and not isinstance(dev, np.ndarray)
    np.testing.assert_allclose(dev.copy_to_host(), cpu, atol=1e-6, rtol=0)

    try:
        backproject_cuda(maps, np.full_like(pixels, s), visible, image_size=s)
    except ValueError as err:
        assert 'pixels' in str(err)
    else:
        raise AssertionError('out-of-range pixels accepted')
    print('cuda-sim-ok')
""")


def test_cuda_kernel_matches_cpu_under_simulator() -> None:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0 and "cuda-sim-ok" in res.stdout, res.stdout + res.stderr
