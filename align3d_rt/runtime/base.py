"""The encoder runner contract: views in, per-view probability maps out.

Every runner (torch reference, onnxruntime, tensorrt, ...) runs the same graph: frozen CLIP visual
tower with DPAM + aligner + constant text embeddings. Rendering, back-projection, fusion and scoring
are shared code outside the runners.

``BaseRunner`` owns the public life cycle (polygraphy style): ``activate()`` / ``deactivate()``
(also as a context manager) guard the state, ``infer()`` checks the views against the runner's
``input_metadata``, splits them into chunks (``max_batch``, the model's own limit and the caller's
``max_views``, the smallest), times itself and returns host or device outputs; subclasses fill
``_activate_impl`` / ``_infer_impl`` / ``_deactivate_impl``. ``_deactivate_impl`` undoes everything
``_activate_impl`` set: a runner's state after deactivation is its state before activation.
``BundleRunner`` is the base of the runners over an exported bundle (bundle or path, ``from_source``,
image and grid size from the manifest). Loading (a session, a compiled model) is done by the
loaders of ``align3d_rt.loaders``, called from ``_activate_impl``.

Branch order everywhere: 0 = rendering branch (raw CLIP features), 1 = RGB-aligned branch (aligner).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from align3d_rt.artifacts.bundle import INPUT_NAME, Bundle, load_bundle
from align3d_rt.errors import BundleError
from align3d_rt.runtime import arrays
from align3d_rt.scoring import BRANCH_NAMES

__all__ = ["BRANCH_NAMES", "VIEW_CHUNK", "BaseRunner", "BundleRunner", "EncoderOutput", "Timer", "check_graph_input"]

# Views per encoder call when the caller sets no limit of its own (the Detector's ``view_chunk``, the
# Triton pipeline's default): 4 clouds of 9 views. The C++ inspector reads the same number from
# cpp/src/encoder.hpp (kViewChunk); docs/runtime-spec.md section 2.
VIEW_CHUNK = 36


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
    def image_size(self) -> int | None:
        """View side S the model takes (None: any)."""
        return None

    def input_metadata(self) -> dict[str, tuple[str, tuple[int | None, ...]]]:
        """The model's input: name -> (dtype, shape), None for a free axis (the batch)."""
        s = self.image_size
        return {INPUT_NAME: ("uint8", (None, s, s, 3))}

    def _batch_limit(self) -> int | None:
        """The model's own largest batch (e.g. an engine's profile; None: no limit). Set by activation."""
        return None

    @property
    def stream(self) -> Any:
        """The numba-compatible CUDA stream shared with kernels that consume this runner's outputs."""
        return 0

    # -- inference -------------------------------------------------------------------------------
    def infer(self, views: Any, copy_outputs_to_host: bool = True, max_views: int | None = None) -> EncoderOutput:
        """views (V,S,S,3) uint8, host or device -> EncoderOutput (patch_maps (V,2,G,G), global_probs (V,2)).

        With ``copy_outputs_to_host=False`` a device runner returns device arrays (no copy).
        ``max_views``: the caller's largest chunk (the runner's ``max_batch`` and model limit apply too)."""
        if not self.is_active:
            raise RuntimeError(f"{self.name} runner: infer() called outside its context (inactive); "
                               f"use `with runner:` or activate()")
        shape = tuple(int(d) for d in views.shape)
        self._check_views(arrays.dtype_name(views), shape)
        if shape[0] == 0:
            g = self.grid_size
            return EncoderOutput(np.zeros((0, 2, g, g), np.float32), np.zeros((0, 2), np.float32))
        limits = [n for n in (self.max_batch, self._batch_limit(), max_views) if n]
        step = min(limits) if limits else shape[0]
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

    def _check_views(self, dtype: str, shape: tuple[int, ...]) -> None:
        """Refuse views that do not fit ``input_metadata`` (ValueError naming the expected shape)."""
        want_dtype, want = next(iter(self.input_metadata().values()))
        fits = len(shape) == len(want) and all(w is None or w == d for w, d in zip(want, shape, strict=True))
        if dtype != want_dtype or not fits:
            side = "S" if want[1] is None else str(want[1])
            raise ValueError(f"views must be {want_dtype} (V,{side},{side},3); got {dtype} {shape}")

    # -- hooks -----------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        """Allocate resources (default: nothing)."""

    def _deactivate_impl(self) -> None:
        """Free resources (default: nothing)."""

    def _infer_impl(self, views: Any) -> EncoderOutput:
        """Run one chunk of at most ``max_batch`` views."""
        raise NotImplementedError


class BundleRunner(BaseRunner):
    """A runner over an exported bundle (a Bundle or its path): ``from_source``, image and grid size."""

    def __init__(self, bundle: Bundle | str | os.PathLike[str], max_batch: int | None = None,
                 device: str = "cpu") -> None:
        super().__init__(max_batch=max_batch, device=device)
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)

    @classmethod
    def from_source(cls, bundle: Bundle, device: str = "cpu", **options: Any) -> BundleRunner:
        """The registry's constructor: the bundle and the runner's options (its device is fixed by the class)."""
        return cls(bundle, **options)

    @property
    def image_size(self) -> int:
        return self.bundle.image_size

    @property
    def grid_size(self) -> int:
        return self.bundle.grid_size


def check_graph_input(bundle: Bundle, shape: Sequence[Any], graph: Any = None) -> None:
    """Refuse (one line, at load) a graph whose fixed view size is not the manifest's ``image_size``."""
    s = bundle.image_size
    dims = list(shape)
    fixed = [d for d in dims[1:3] if isinstance(d, int)] if len(dims) == 4 else []
    if len(dims) != 4 or (isinstance(dims[3], int) and dims[3] != 3) or any(d != s for d in fixed):
        raise BundleError(f"{graph or bundle.onnx_path}: the graph takes views of shape {dims}, but the manifest's "
                          f"image_size is {s} (expected (batch, {s}, {s}, 3)); re-export the bundle")
