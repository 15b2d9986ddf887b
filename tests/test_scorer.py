"""The Scorer protocol: what the infer command scores with, the local Detector and the Triton client alike."""
from __future__ import annotations

import inspect

from infer_eval_support import bump_cloud, fake_detector

from align3d_rt.runtime.detector import Detector
from align3d_rt.runtime.scorer import Scorer
from align3d_rt.serving.triton_client import TritonScorer


def test_detector_and_triton_client_are_scorers() -> None:
    det, _ = fake_detector()
    remote = TritonScorer("http://127.0.0.1:8000")  # not connected: a Scorer by its interface alone
    assert isinstance(det, Scorer) and isinstance(remote, Scorer)
    assert not isinstance(remote, Detector)  # the client is not a Detector (no runner, no render)
    assert not isinstance(object(), Scorer)


def test_scorers_take_the_protocols_arguments() -> None:
    """score_stream's parameters, in order and with their defaults, are the protocol's in both (extra ones last)."""
    want = list(inspect.signature(Scorer.score_stream).parameters.values())
    for cls in (Detector, TritonScorer):
        have = list(inspect.signature(cls.score_stream).parameters.values())
        assert [(p.name, p.default) for p in have[:len(want)]] == [(p.name, p.default) for p in want], cls
        assert all(p.default is not inspect.Parameter.empty for p in have[len(want):]), cls


def test_a_detector_scores_through_the_protocol() -> None:
    det, _ = fake_detector()
    scorer: Scorer = det
    with scorer:
        [(item, result)] = list(scorer.score_stream([bump_cloud(12)]))
    assert result.point_scores.shape == (144, 3) and item.num_points == 144
    assert scorer.describe()["fusion_weight"] == scorer.fusion_weight == 0.5
