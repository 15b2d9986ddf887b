"""Per-point arithmetic shared by the CPU and CUDA back-projection kernels.

Plain Python functions: ``bind`` compiles them (and the fusion rule of ``align3d_rt.scoring``)
with numba.njit for backproject.py and numba.cuda.jit(device=True) for backproject_cuda.py, so both
targets run the same lines.
"""
from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from align3d_rt import scoring

if TYPE_CHECKING:  # bound (compiled) by bind() in the kernel module's namespace; the name, for the linters
    from align3d_rt.scoring import fuse


def bilinear_pair(maps, b, v, x, y, i0, i1, lam1):  # pragma: no cover - runs compiled
    """Bilinear value of both branch maps of view v at pixel (x=col, y=row) of the upsampled image."""
    x0 = i0[x]
    x1 = i1[x]
    y0 = i0[y]
    y1 = i1[y]
    lx1 = np.float64(lam1[x])
    ly1 = np.float64(lam1[y])
    lx0 = 1.0 - lx1
    ly0 = 1.0 - ly1
    r = (ly0 * (lx0 * maps[b, v, 0, y0, x0] + lx1 * maps[b, v, 0, y0, x1])
         + ly1 * (lx0 * maps[b, v, 0, y1, x0] + lx1 * maps[b, v, 0, y1, x1]))
    a = (ly0 * (lx0 * maps[b, v, 1, y0, x0] + lx1 * maps[b, v, 1, y0, x1])
         + ly1 * (lx0 * maps[b, v, 1, y1, x0] + lx1 * maps[b, v, 1, y1, x1]))
    return r, a


def write_scores(out, b, n, acc0, acc1, count, weight):  # pragma: no cover - runs compiled
    """Mean over the visible views per branch, then the fused score; zeros when visible nowhere."""
    if count > 0:
        r = acc0 / count
        a = acc1 / count
        out[b, n, 0] = r
        out[b, n, 1] = a
        out[b, n, 2] = fuse(r, a, weight)  # bound by bind(): calls stay compiled
    else:
        out[b, n, 0] = 0.0
        out[b, n, 1] = 0.0
        out[b, n, 2] = 0.0


FUNCTIONS = {"fuse": scoring.fuse, "bilinear_pair": bilinear_pair, "write_scores": write_scores}


def bind(namespace: dict[str, Any], decorate: Callable[[Any], Any]) -> None:
    """Compile every function above with ``decorate`` into ``namespace`` (a kernel module's globals);
    the copies call each other by name there, so calls stay compiled."""
    namespace["np"] = np
    for name, f in FUNCTIONS.items():
        copy = types.FunctionType(f.__code__, namespace, name, f.__defaults__, f.__closure__)
        copy.__module__ = namespace["__name__"]
        copy.__qualname__ = name
        namespace[name] = decorate(copy)
