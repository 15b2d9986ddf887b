"""The encoder runner contract: views in, per-view probability maps out.

Every runner (torch reference, onnxruntime, tensorrt, ...) runs the same graph: frozen CLIP visual
tower with DPAM + aligner + constant text embeddings. Rendering, back-projection, fusion and scoring
are shared code outside the runners.

``BaseRunner`` owns the public life cycle (polygraphy style): ``activate()`` / ``deactivate()``
(also as a context manager) guard the state, ``infer()`` checks the views, splits them into chunks
of ``max_batch``, times itself and returns host or device outputs; subclasses fill
``_activate_impl`` / ``_infer_impl`` / ``_deactivate_impl``.

Branch order everywhere: 0 = rendering branch (raw CLIP features), 1 = RGB-aligned branch (aligner).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from align3d_rt.runtime import arrays
from align3d_rt.scoring import BRANCH_NAMES

__all__ = ["BRANCH_NAMES", "BaseRunner", "EncoderOutput", "Timer"]


@dataclass
class EncoderOutput:
    """patch_maps (V,2,G,G) float32: abnormal probability per patch and branch (CLS dropped).
    global_probs (V,2) float32: abnormal probability of each view's global feature per branch.
    Either numpy arrays or device arrays of one kind (see ``on_device``)."""

    patch_maps: Any
    global_probs: Any

    @property
    def on_device(self) -> bool:
        return arrays.is_device(self.patch_maps)

    def to_host(self) -> EncoderOutput:
        return EncoderOutput(np.asarray(arrays.to_host(self.patch_maps), dtype=np.float32),
                             np.asarray(arrays.to_host(self.global_probs), dtype=np.float32))


class Timer:
    """Records the seconds a ``with`` block took."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


class BaseRunner:
    """One encoder backend. ``with runner: out = runner.infer(views)``.

    ``max_batch``: views per ``_infer_impl`` call (None = all at once). ``device``: 'cpu' or
    'cuda' (where ``infer`` wants its inputs and, with ``copy_outputs_to_host=False``, leaves its
    outputs). ``stream``: the CUDA stream the runner works on (numba-compatible), or None.
    """

    name: ClassVar[str] = "base"

    def __init__(self, max_batch: int | None = None, device: str = "cpu") -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.device = device
        self.is_active = False
        self.last_infer_seconds = 0.0
        self.total_infer_seconds = 0.0
        self.infer_calls = 0

    # -- life cycle ------------------------------------------------------------------------------
    def activate(self) -> BaseRunner:
        """Allocate (load the session/engine, move weights to the device). Not re-entrant."""
        if self.is_active:
            raise RuntimeError(f"{self.name} runner is already active")
        self._activate_impl()
        self.is_active = True
        return self

    def deactivate(self) -> None:
        """Free what ``activate`` allocated; the runner can be activated again."""
        if not self.is_active:
            raise RuntimeError(f"{self.name} runner is not active")
        try:
            self._deactivate_impl()
        finally:
            self.is_active = False

    def __enter__(self) -> BaseRunner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @property
    def grid_size(self) -> int:
        """Patch grid side G of the outputs."""
        raise NotImplementedError

    @property
    def stream(self) -> Any:
        """The numba-compatible CUDA stream shared with kernels that consume this runner's outputs."""
        return 0

    # -- inference -------------------------------------------------------------------------------
    def infer(self, views: Any, copy_outputs_to_host: bool = True) -> EncoderOutput:
        """views (V,S,S,3) uint8, host or device -> EncoderOutput (patch_maps (V,2,G,G), global_probs (V,2)).

        With ``copy_outputs_to_host=False`` a device runner returns device arrays (no copy)."""
        if not self.is_active:
            raise RuntimeError(f"{self.name} runner: infer() called outside its context (inactive); "
                               f"use `with runner:` or activate()")
        shape = tuple(int(d) for d in views.shape)
        if len(shape) != 4 or shape[3] != 3 or arrays.dtype_name(views) != "uint8":
            raise ValueError(f"views must be uint8 (V,S,S,3); got {arrays.dtype_name(views)} {shape}")
        if shape[0] == 0:
            g = self.grid_size
            return EncoderOutput(np.zeros((0, 2, g, g), np.float32), np.zeros((0, 2), np.float32))
        step = self.max_batch or shape[0]
        with Timer() as timer:
            parts = [self._infer_impl(views[i:i + step]) for i in range(0, shape[0], step)]
            out = EncoderOutput(arrays.concat([p.patch_maps for p in parts]),
                                arrays.concat([p.global_probs for p in parts]))
            if copy_outputs_to_host or not out.on_device:
                out = out.to_host()
        self.last_infer_seconds = timer.seconds
        self.total_infer_seconds += timer.seconds
        self.infer_calls += 1
        return out

    # -- hooks -----------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        """Allocate resources (default: nothing)."""

    def _deactivate_impl(self) -> None:
        """Free resources (default: nothing)."""

    def _infer_impl(self, views: Any) -> EncoderOutput:
        """Run one chunk of at most ``max_batch`` views."""
        raise NotImplementedError

