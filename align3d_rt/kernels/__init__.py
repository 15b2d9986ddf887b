"""align3d_rt.kernels: numba kernels (CPU njit and numba.cuda), torch-free.

Importing numba.cuda works without a GPU; ``backproject_cuda`` needs one (or
NUMBA_ENABLE_CUDASIM=1) only when called.
"""
from __future__ import annotations

from align3d_rt.kernels.backproject import backproject
from align3d_rt.kernels.backproject_cuda import backproject_cuda

__all__ = ["backproject", "backproject_cuda"]
