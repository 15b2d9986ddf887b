"""What scores clouds for the infer command: the ``Scorer`` protocol.

The local :class:`~align3d_rt.runtime.detector.Detector` and the Triton client
(:class:`align3d_rt.serving.triton_client.TritonScorer`) both implement it; the command needs nothing else
(a Scorer that has a calibration also answers ``calibration`` or ``calibration_summary``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from align3d_rt.data.sample import PointCloudSample
from align3d_rt.errors import InputError
from align3d_rt.runtime.detector import KeepRender, ScoreResult


@runtime_checkable
class Scorer(Protocol):
    """Point clouds in, one ScoreResult (or the cloud's InputError) per cloud out, in input order."""

    @property
    def fusion_weight(self) -> float:
        """The weight of the aligned branch in the fused channel (for drawing the fused view maps)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What scores the clouds (scores.json's ``detector``)."""
        ...

    def score_stream(self, items: Iterable[Any], load: Callable[[Any], PointCloudSample] | None = None,
                     batch_size: int = 1, keep_render: KeepRender = False
                     ) -> Iterator[tuple[Any, ScoreResult | InputError]]:
        """(item, ScoreResult or InputError) per item; ``load(item)`` makes the cloud (items are clouds when None)."""
        ...

    def close(self) -> None:
        """Release what scoring holds (runner, connection); scoring again re-acquires it."""
        ...

    def __enter__(self) -> Scorer: ...

    def __exit__(self, *exc: object) -> None: ...
