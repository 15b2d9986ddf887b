"""BaseRunner: the public life cycle guards its state, infer() checks, chunks and times every backend alike."""
from __future__ import annotations

import numpy as np
import pytest
from infer_eval_support import FakeBackend

from align3d_rt.runtime.base import BaseRunner


def _views(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 48, 48, 3), dtype=np.uint8)


def test_state_guards() -> None:
    runner = FakeBackend(grid=4)
    with pytest.raises(RuntimeError, match="outside its context"):
        runner.infer(_views(1))
    with pytest.raises(RuntimeError, match="not active"):
        runner.deactivate()
    with runner:
        with pytest.raises(RuntimeError, match="already active"):
            runner.activate()
        assert runner.is_active
    assert not runner.is_active and runner.enters == 1
    with runner:  # can be activated again
        assert runner.infer(_views(1)).patch_maps.shape == (1, 2, 4, 4)


def test_infer_chunks_times_and_checks() -> None:
    runner = FakeBackend(grid=4)
    runner.max_batch = 3
    views = _views(7)
    with runner:
        out = runner.infer(views)
        empty = runner.infer(views[:0])
        with pytest.raises(ValueError, match="uint8"):
            runner.infer(views.astype(np.float32))
        with pytest.raises(ValueError, match=r"\(V,S,S,3\)"):
            runner.infer(views[..., :2])
    assert runner.calls == [3, 3, 1]  # chunks of max_batch, in order
    assert out.patch_maps.shape == (7, 2, 4, 4) and out.global_probs.shape == (7, 2)
    whole = FakeBackend(grid=4)
    with whole:
        ref = whole.infer(views)
    np.testing.assert_array_equal(out.patch_maps, ref.patch_maps)
    assert empty.patch_maps.shape == (0, 2, 4, 4) and empty.global_probs.shape == (0, 2)
    assert runner.infer_calls == 1 and runner.last_infer_seconds > 0  # the empty call ran nothing
    assert runner.total_infer_seconds >= runner.last_infer_seconds


def test_a_backend_fills_only_the_hooks() -> None:
    """A new backend needs _infer_impl (and grid_size); activate/deactivate hooks default to nothing."""

    class Constant(BaseRunner):
        name = "constant"
        grid_size = 2

        def _infer_impl(self, views):  # noqa: ANN001, ANN202
            from align3d_rt.runtime.base import EncoderOutput

            n = len(views)
            return EncoderOutput(np.full((n, 2, 2, 2), 0.25, np.float32), np.full((n, 2), 0.5, np.float32))

    with Constant() as r:
        out = r.infer(_views(2), copy_outputs_to_host=False)  # host runner: outputs are host arrays anyway
    assert isinstance(out.patch_maps, np.ndarray) and float(out.patch_maps.max()) == 0.25
