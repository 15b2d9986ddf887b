"""Test support for the infer/eval/demo tests: a fast deterministic encoder backend and small clouds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from align3d_rt.data.sample import PointCloudSample
from align3d_rt.render.views import RenderSettings
from align3d_rt.runtime.base import BaseRunner, EncoderOutput
from align3d_rt.runtime.detector import Detector


def fake_maps(views: np.ndarray, grid: int) -> EncoderOutput:
    """Patch abnormal probability = darkness of the patch (per branch a different gain); global = mean darkness."""
    v, s = views.shape[0], views.shape[1]
    p = s // grid
    dark = 1.0 - views[..., 0].astype(np.float32) / 255.0
    patches = dark[:, : p * grid, : p * grid].reshape(v, grid, p, grid, p).mean(axis=(2, 4))
    maps = np.stack([patches, np.sqrt(patches)], axis=1).astype(np.float32)
    g = dark.reshape(v, -1).mean(1)
    return EncoderOutput(patch_maps=maps, global_probs=np.stack([g, 0.5 * g + 0.25], 1).astype(np.float32))


class FakeBackend(BaseRunner):
    """Deterministic stand-in encoder (``fake_maps``). Records how often it was activated/called."""

    name = "fake"

    def __init__(self, grid: int = 24) -> None:
        super().__init__()
        self.grid = grid
        self.enters = 0
        self.calls: list[int] = []

    @classmethod
    def from_source(cls, source: object, device: str = "cpu") -> FakeBackend:
        return cls()

    @property
    def grid_size(self) -> int:
        return self.grid

    def _activate_impl(self) -> None:
        self.enters += 1

    def _infer_impl(self, views: np.ndarray) -> EncoderOutput:
        self.calls.append(len(views))
        return fake_maps(np.asarray(views), self.grid)


def fake_detector(fusion_weight: float = 0.5, preset: str = "mvtec9", view_chunk: int = 36,
                  info: dict | None = None) -> tuple[Detector, FakeBackend]:
    backend = FakeBackend()
    settings = RenderSettings(preset=preset, point_size=8)
    det = Detector(lambda: backend, settings, fusion_weight, "fake", info or {"backend": "fake"}, view_chunk=view_chunk)
    return det, backend


def bump_cloud(n_side: int, seed: int = 0, category: str = "dome", source: str = "") -> PointCloudSample:
    """A small height-field cloud (metres) with a bump; n_side^2 points."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1, 1, n_side), np.linspace(-1, 1, n_side))
    z = 0.3 * np.exp(-(u ** 2 + v ** 2) * 2) + 0.01 * rng.standard_normal(u.shape)
    pts = (np.stack([u.ravel(), v.ravel(), z.ravel()], 1) * 0.05).astype(np.float32)
    return PointCloudSample(points=pts, category=category, dataset="synthetic",
                            source=source or f"bump{n_side}_{seed}.npy")


_TINY_RUN: dict[str, object] = {}


def shared_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One random tiny-CLIP run directory per test process (built on first use)."""
    from align3d_rt.train.random_run import random_run_dir

    if "path" not in _TINY_RUN:
        _TINY_RUN["path"] = random_run_dir(tmp_path_factory.mktemp("tiny_run") / "run")
    return Path(str(_TINY_RUN["path"]))
