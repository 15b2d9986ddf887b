"""Back-projection kernel vs the torch reference (B=1, V=9, N=112,896, G=24, S=336).

Run: ``.venv/bin/python -m pytest bench/bench_kernels.py -s`` (pytest-benchmark), or
``.venv/bin/python bench/bench_kernels.py`` for a plain timing with the ratio.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

B, V, N, G, S = 1, 9, 112_896, 24, 336
_MEDIANS: dict[str, float] = {}


def make_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = rng.random((B, V, 2, G, G), dtype=np.float32)
    pixels = rng.integers(0, S, (B, V, N, 2)).astype(np.int32)
    visible = rng.random((B, V, N)) < 0.4
    return maps, pixels, visible


def torch_reference_fn(maps: np.ndarray, pixels: np.ndarray, visible: np.ndarray) -> Callable[[], np.ndarray]:
    """The reference formulation (upsample to SxS, gather, masked mean, fuse) as a closure."""
    import torch

    t_maps = torch.from_numpy(maps).reshape(B * V, 2, G, G)
    p = torch.from_numpy(pixels).long()
    mask = torch.from_numpy(visible).float()[..., None]
    bi = torch.arange(B)[:, None, None]
    vi = torch.arange(V)[None, :, None]

    def run() -> np.ndarray:
        up = torch.nn.functional.interpolate(t_maps, size=(S, S), mode="bilinear",
                                             align_corners=False).reshape(B, V, 2, S, S)
        gathered = up[bi, vi, :, p[..., 1], p[..., 0]]
        mean = (gathered * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        fused = 0.5 * mean[..., 1] + 0.5 * mean[..., 0]
        return torch.cat([mean, fused[..., None]], dim=-1).numpy()

    return run


def kernel_fn(maps: np.ndarray, pixels: np.ndarray, visible: np.ndarray) -> Callable[[], np.ndarray]:
    from align3d_rt.kernels import backproject

    backproject(maps, pixels, visible)  # compile / load the cache outside the timing
    return lambda: backproject(maps, pixels, visible)


def test_bench_backproject_kernel(benchmark: Any) -> None:  # pytest-benchmark fixture
    maps, pixels, visible = make_inputs()
    out = benchmark(kernel_fn(maps, pixels, visible))
    assert out.shape == (B, N, 3)
    _MEDIANS["kernel"] = benchmark.stats.stats.median


def test_bench_backproject_torch_reference(benchmark: Any) -> None:
    maps, pixels, visible = make_inputs()
    out = benchmark(torch_reference_fn(maps, pixels, visible))
    assert out.shape == (B, N, 3)
    _MEDIANS["torch"] = benchmark.stats.stats.median
    if "kernel" in _MEDIANS:
        print(f"\nbackproject: kernel {_MEDIANS['kernel'] * 1e3:.2f} ms, torch reference "
              f"{_MEDIANS['torch'] * 1e3:.2f} ms, speed-up x{_MEDIANS['torch'] / _MEDIANS['kernel']:.1f}")


def _median_time(fn: Callable[[], np.ndarray], repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


if __name__ == "__main__":
    inputs = make_inputs()
    k_fn, t_fn = kernel_fn(*inputs), torch_reference_fn(*inputs)
    assert np.allclose(k_fn(), t_fn(), atol=1e-6)
    t_kernel, t_torch = _median_time(k_fn), _median_time(t_fn)
    print(f"backproject B={B} V={V} N={N}: kernel {t_kernel * 1e3:.2f} ms, torch reference "
          f"{t_torch * 1e3:.2f} ms, speed-up x{t_torch / t_kernel:.1f}")
