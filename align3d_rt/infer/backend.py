"""The encoder backend interface: views in, per-view probability maps out.

Every backend (torch reference, onnxruntime, tensorrt) runs the same graph: frozen CLIP visual tower
with DPAM + aligner + constant text embeddings. Rendering, back-projection, fusion and scoring are
shared code outside the backends.

Branch order everywhere: 0 = rendering branch (raw CLIP features), 1 = RGB-aligned branch (aligner).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

BRANCH_NAMES = ("render", "aligned")


@dataclass
class EncoderOutput:
    """patch_maps (V,2,G,G) float32: abnormal probability per patch and branch (CLS dropped).
    global_probs (V,2) float32: abnormal probability of each view's global feature per branch."""

    patch_maps: np.ndarray
    global_probs: np.ndarray


@runtime_checkable
class EncoderBackend(Protocol):
    """Context-managed runner: ``__enter__`` allocates, ``infer`` runs, ``__exit__`` frees."""

    name: str
    last_infer_seconds: float

    def __enter__(self) -> "EncoderBackend": ...

    def __exit__(self, *exc: object) -> None: ...

    def infer(self, views: np.ndarray) -> EncoderOutput:
        """views: (V,S,S,3) uint8 rendered images (S = image size, 336)."""
        ...


class Timer:
    """Tiny helper for backends to record their own inference time."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
