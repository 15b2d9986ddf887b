"""Detector: shapes, object-score formula, batching, back-projection wiring, backends, torch-free import."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from infer_eval_support import bump_cloud, fake_detector, shared_tiny_run

from align3d_rt.data.sample import PointCloudSample
from align3d_rt.errors import Align3DError, BackendUnavailable
from align3d_rt.runtime.detector import Detector
from align3d_rt.scoring import object_score, upsample_map

# (detector, fake backend, samples, batch results, one-by-one results)
Scored = tuple[Detector, Any, list[PointCloudSample], list[Any], list[Any]]


@pytest.fixture(scope="module")
def scored() -> Scored:
    det, backend = fake_detector(fusion_weight=0.3)
    samples = [bump_cloud(40, seed=1), bump_cloud(55, seed=2), bump_cloud(30, seed=3)]
    with det:
        batch = det.score(samples)
        single = [det.score([s])[0] for s in samples]
    return det, backend, samples, batch, single


def test_shapes_and_dtypes(scored: Scored) -> None:
    det, _, samples, batch, _ = scored
    for s, r in zip(samples, batch, strict=True):
        assert r.point_scores.shape == (s.num_points, 3) and r.point_scores.dtype == np.float32
        assert r.view_maps.shape == (9, 2, 24, 24) and r.global_probs.shape == (9, 2)
        assert r.render.images.shape == (9, 336, 336, 3)
        assert set(r.timings) >= {"render", "encode", "backproject"}
        assert r.sample_id == s.sample_id


def test_fused_channel_and_object_score_formula(scored: Scored) -> None:
    det, _, _, batch, _ = scored
    w = det.fusion_weight
    for r in batch:
        np.testing.assert_allclose(r.point_scores[:, 2], w * r.point_scores[:, 1] + (1 - w) * r.point_scores[:, 0],
                                   rtol=1e-5, atol=1e-6)
        g = w * r.global_probs[:, 1] + (1 - w) * r.global_probs[:, 0]
        assert r.object_score == pytest.approx(float(r.point_scores[:, 2].max() + g.mean()), rel=1e-6)
        assert r.object_score == pytest.approx(object_score(r.fused, r.global_probs, w))


def test_batched_equals_one_by_one(scored: Scored) -> None:
    _, backend, _, batch, single = scored
    assert backend.enters == 1  # the context manager activated the backend once
    assert backend.calls[0] == 27  # one encoder call over all views of the batch
    for a, b in zip(batch, single, strict=True):
        np.testing.assert_allclose(a.point_scores, b.point_scores, atol=1e-6)
        assert a.object_score == pytest.approx(b.object_score, abs=1e-6)


def test_view_chunking_same_result() -> None:
    det, backend = fake_detector(view_chunk=4)
    ref_det, _ = fake_detector(view_chunk=100)
    samples = [bump_cloud(30, seed=5), bump_cloud(35, seed=6)]
    a, b = det.score(samples), ref_det.score(samples)
    assert max(backend.calls) <= 4 and sum(backend.calls) == 18
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.point_scores, y.point_scores, atol=1e-6)


def test_point_scores_equal_visible_view_average(scored: Scored) -> None:
    """Each point's branch score = mean over its visible views of the upsampled map at its pixel."""
    _, _, _, batch, _ = scored
    r = batch[1]
    px, vis = r.render.pixels, r.render.visible
    for branch in (0, 1):
        ups = np.stack([upsample_map(r.view_maps[v, branch], 336) for v in range(9)])
        vals = ups[np.arange(9)[:, None], px[..., 1], px[..., 0]]  # (V,N): row = y, column = x
        expect = (vals * vis).sum(0) / np.maximum(vis.sum(0), 1)
        np.testing.assert_allclose(r.point_scores[:, branch], expect, atol=1e-5)


def test_empty_cloud_is_one_line_input_error() -> None:
    det, _ = fake_detector()
    bad = bump_cloud(10)
    bad.points = np.zeros((0, 3), np.float32)
    with pytest.raises(Align3DError, match="no valid points") as err:
        det.score([bad])
    assert "\n" not in str(err.value)


def test_point_size_follows_sample_category() -> None:
    det, _ = fake_detector()
    a = bump_cloud(10, category="cable_gland")
    a.dataset = "mvtec3d"
    assert det.settings_for_sample(a).point_size == 12
    assert det.settings_for_sample(a).preset == det.render_settings.preset
    b = bump_cloud(10)
    b.dataset = ""
    assert det.settings_for_sample(b) == det.render_settings


def test_wrong_backend_for_run_dir(tmp_path: Path) -> None:
    with pytest.raises(Align3DError, match="needs an exported bundle"):
        Detector.from_run(tmp_path, backend="onnxruntime")


def test_incomplete_run_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(Align3DError) as err:
        Detector.from_run(tmp_path / "missing")
    assert "\n" not in str(err.value) and "missing" in str(err.value)


def test_missing_backend_module_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from align3d_rt.runtime import registry

    monkeypatch.setitem(sys.modules, "align3d_rt.runtime.tensorrt_backend", None)
    det = Detector(lambda: registry.create_runner("tensorrt", object(), device="cuda"),
                   fake_detector()[0].render_settings, 0.5, "tensorrt")
    with pytest.raises(BackendUnavailable, match="backend 'tensorrt' is not available") as err:
        det.score([bump_cloud(10)])
    assert "\n" not in str(err.value)


def test_torch_backend_on_random_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The real torch backend (tiny CLIP, random aligner/text): probabilities, shapes, batch == single."""
    run = shared_tiny_run(tmp_path_factory)
    det = Detector.from_run(run, backend="torch")
    samples = [bump_cloud(30, seed=7), bump_cloud(36, seed=8)]
    with det:
        batch = det.score(samples)
        single = det.score(samples[1:])
    r = batch[1]
    assert r.view_maps.shape == (9, 2, 24, 24)
    assert np.all((r.point_scores >= 0) & (r.point_scores <= 1))
    assert 0 <= r.object_score <= 2
    np.testing.assert_allclose(single[0].point_scores, r.point_scores, atol=1e-5)
    assert det.describe()["clip_name"] == "align3d-tiny"


def test_pipeline_runs_with_torch_unimportable() -> None:
    """infer.pipeline, the CLI modules and a full score (fake encoder) work with torch blocked."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules['torch'] = None
        sys.path.insert(0, {support_dir!r})
        import align3d_rt.runtime.detector, align3d_rt.cli.infer, align3d_rt.cli.eval, align3d_rt.eval.protocols
        import align3d_rt.eval.report, align3d_rt.eval.pictures, align3d_rt.eval.outputs
        from infer_eval_support import bump_cloud, fake_detector
        det, _ = fake_detector()
        r = det.score([bump_cloud(20)])[0]
        assert r.point_scores.shape == (400, 3)
        assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None and m == 'torch']
        print('ok')
        """
    ).format(support_dir=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_score_stream_equals_score_in_order_and_isolates_bad_items() -> None:
    """The pipelined path gives the serial path's numbers, in input order; a bad cloud is reported, not fatal."""
    from align3d_rt.errors import InputError

    det, backend = fake_detector(fusion_weight=0.3)
    clouds = [bump_cloud(40, seed=1), bump_cloud(55, seed=2), bump_cloud(30, seed=3), bump_cloud(45, seed=4)]
    bad = PointCloudSample(points=np.zeros((0, 3), np.float32), source="empty.npy")
    items = [0, 1, "bad", 2, 3]
    load = {0: clouds[0], 1: clouds[1], 2: clouds[2], 3: clouds[3], "bad": bad}.__getitem__
    with det:
        serial = det.score(clouds, keep_render=False)
        streamed = list(det.score_stream(items, load=load, batch_size=2, depth=1))
    assert [item for item, _ in streamed] == items
    assert isinstance(streamed[2][1], InputError) and "empty.npy" in str(streamed[2][1])
    got = [r for _, r in streamed if not isinstance(r, InputError)]
    for a, b in zip(serial, got, strict=True):
        np.testing.assert_allclose(a.point_scores, b.point_scores, atol=1e-6)
        assert a.object_score == pytest.approx(b.object_score, abs=1e-6)
        assert b.sample is not None and b.render is None
    assert backend.calls[-3:] == [18, 9, 9]  # batches of 2 items: (0,1), ("bad",2) -> one cloud, (3)


def test_score_stream_raises_a_runner_failure_and_stops() -> None:
    """An unexpected error in a stage ends the stream with that error; no stage thread is left running."""
    import threading

    det, backend = fake_detector()

    def boom(views):  # noqa: ANN001, ANN202
        raise RuntimeError("encoder exploded")

    backend._infer_impl = boom  # type: ignore[method-assign]
    before = {t.name for t in threading.enumerate()}
    with det, pytest.raises(RuntimeError, match="encoder exploded"):
        list(det.score_stream([bump_cloud(20, seed=s) for s in range(6)], batch_size=1))
    left = {t.name for t in threading.enumerate()} - before
    assert not any(name.startswith("align3d-") for name in left), left
