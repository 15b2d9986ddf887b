"""``--scoring reference`` against an independent plain-numpy implementation of the reference formulas
(tests/reference_formulas.py), exact to 1e-6."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reference_formulas import np_gaussian_blur, np_reference

from align3d_rt.scoring_reference import ReferenceScoringError, ReferenceSettings, grid_layout, reference_scores

TOL = 1e-6


def _scores(n: int, rng: np.random.Generator, blob_at: np.ndarray | None = None) -> np.ndarray:
    """(N,3) float32 probabilities: noise plus a smooth bump on some points (fused channel unused)."""
    s = rng.uniform(0.05, 0.4, (n, 3))
    if blob_at is not None:
        s[:, :2] += 0.5 * np.exp(-blob_at[:, None] / 200.0) * rng.uniform(0.5, 1.0, 2)
    return np.clip(s, 0.0, 1.0).astype(np.float32)


def _compare(got, want: dict) -> None:  # noqa: ANN001
    assert abs(got.object_score - want["object"]) <= TOL
    np.testing.assert_allclose(got.image_map, want["image_map"], rtol=0, atol=TOL)
    np.testing.assert_allclose(got.point_map, want["point_map"], rtol=0, atol=TOL)
    np.testing.assert_allclose(got.point_scores, want["points"], rtol=0, atol=TOL)


@pytest.mark.parametrize("dataset, wi, wp, need_blur", [
    ("mvtec3d", 0.5, 0.5, True),
    ("mvtec3d", 0.3, 0.8, False),
    ("eyecandies", 0.7, 0.2, True),
    ("eyecandies", 0.0, 1.0, True),
])
def test_organized_grid_matches_numpy_reference(dataset: str, wi: float, wp: float, need_blur: bool) -> None:
    rng = np.random.default_rng(hash((dataset, wi, wp)) % 2**32)
    side = 336
    cells = np.sort(rng.choice(side * side, size=30_000, replace=False))
    rows, cols = np.divmod(cells, side)
    pts = _scores(cells.size, rng, blob_at=(rows - 150.0) ** 2 + (cols - 200.0) ** 2)
    g = rng.uniform(0, 1, (9, 2)).astype(np.float32)
    settings = ReferenceSettings(image_weight=wi, point_weight=wp, blur_image_map=need_blur)
    got = reference_scores(pts, g, cells, (side, side), settings, dataset=dataset)
    want = np_reference(pts[:, 0], pts[:, 1], g, cells, (side, side), wi, wp, mvtec=dataset == "mvtec3d",
                        need_blur=need_blur)
    _compare(got, want)
    assert got.organized and got.point_map.dtype == np.float32 and got.point_map.shape == (side, side)
    # the background cells are not zero after the blur (they count in the reference's P-R/P-P)
    background = np.setdiff1d(np.arange(side * side), cells)
    assert got.point_map.ravel()[background].max() > 0.01


def test_unorganized_cloud_is_reshaped_in_point_order() -> None:
    """Real3D-AD quirk: 112,896 unorganized points reshaped row-major to 336x336 before blurring."""
    rng = np.random.default_rng(3)
    n = 336 * 336
    pts = _scores(n, rng, blob_at=(np.arange(n) - 50_000.0) ** 2 / 1e4)
    g = rng.uniform(0, 1, (36, 2)).astype(np.float32)
    got = reference_scores(pts, g, None, None, ReferenceSettings(), dataset="real3d")
    want = np_reference(pts[:, 0], pts[:, 1], g, np.arange(n), (336, 336), 0.5, 0.5, mvtec=False)
    _compare(got, want)
    assert not got.organized
    cells, shape, organized = grid_layout(400, None, None)
    assert shape == (20, 20) and not organized and np.array_equal(cells, np.arange(400))


def test_unorganized_cloud_not_square_is_refused() -> None:
    with pytest.raises(ReferenceScoringError, match="1000 points is not a square number"):
        reference_scores(np.zeros((1000, 3), np.float32), np.zeros((9, 2), np.float32), None, None,
                         ReferenceSettings())
    with pytest.raises(ValueError, match="image_weight 1.5"):
        ReferenceSettings(image_weight=1.5)


def test_numpy_blur_is_independent_of_scipy_yet_equal() -> None:
    """The test's own blur agrees with scipy's gaussian_filter defaults (a check of the check)."""
    from scipy.ndimage import gaussian_filter

    img = np.random.default_rng(0).random((40, 37))
    np.testing.assert_allclose(np_gaussian_blur(img), gaussian_filter(img, sigma=4), rtol=0, atol=1e-12)


def _grid_sample(seed: int, dataset: str):  # noqa: ANN202
    """An organized height-field cloud on a 336x336 grid (every 4th cell), with a bump."""
    from infer_eval_support import bump_cloud

    side = 56
    sample = bump_cloud(side, seed=seed)
    rows, cols = np.meshgrid(np.arange(side) * 6, np.arange(side) * 6, indexing="ij")
    sample.grid_index = (rows * 336 + cols).ravel().astype(np.int64)
    sample.grid_shape = (336, 336)
    sample.dataset = dataset
    return sample


@pytest.mark.parametrize("dataset", ["mvtec3d", "eyecandies"])
def test_detector_reference_mode_equals_numpy_on_the_same_tensors(dataset: str) -> None:
    """Same detector tensors (fake encoder): reference mode's object score, fused channel and map equal the
    independent implementation applied to ours-mode render/aligned channels and global probabilities."""
    from infer_eval_support import fake_detector

    det, _ = fake_detector(fusion_weight=0.5)
    samples = [_grid_sample(s, dataset) for s in (0, 1)]
    with det:
        ours = det.score(samples, keep_render=False)
        det.reference_scoring = ReferenceSettings(image_weight=0.4, point_weight=0.6)
        ref = det.score(samples, keep_render=False)
    for sample, o, r in zip(samples, ours, ref, strict=True):
        np.testing.assert_array_equal(o.point_scores[:, :2], r.point_scores[:, :2])
        want = np_reference(o.point_scores[:, 0], o.point_scores[:, 1], o.global_probs, sample.grid_index,
                            (336, 336), 0.4, 0.6, mvtec=dataset == "mvtec3d")
        assert abs(r.object_score - want["object"]) <= TOL
        np.testing.assert_allclose(r.fused, want["points"], rtol=0, atol=TOL)
        np.testing.assert_allclose(r.reference.point_map, want["point_map"], rtol=0, atol=TOL)
        assert abs(r.object_score - o.object_score) > 1e-3  # the two modes really differ
    assert det.describe()["scoring"] == dict(ReferenceSettings(0.4, 0.6).to_dict())


def test_infer_cli_reference_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """infer --scoring reference: square clouds scored the reference way, others refused per file."""
    from infer_eval_support import bump_cloud, fake_detector

    from align3d_rt.cli import infer as infer_cli
    from align3d_rt.cli import main

    det, _ = fake_detector(fusion_weight=0.5)
    monkeypatch.setattr(infer_cli, "build_detector", lambda args: det)
    np.save(tmp_path / "square.npy", bump_cloud(30, seed=0).points)  # 900 = 30^2 points
    np.save(tmp_path / "odd.npy", bump_cloud(30, seed=1).points[:899])
    out = tmp_path / "out"
    rc = main(["infer", str(tmp_path / "square.npy"), str(tmp_path / "odd.npy"), "--run", str(tmp_path),
               "--out", str(out), "--no-ply", "--no-png", "--scoring", "reference", "--image-level-weight", "0.25"])
    err = capsys.readouterr().err
    assert rc == 1 and "899 points is not a square number" in err
    summary = json.loads((out / "scores.json").read_text())
    assert summary["detector"]["scoring"]["image_level_weight"] == 0.25
    assert summary["detector"]["scoring"]["point_level_weight"] == 0.5
    scores = np.load(out / "square.scores.npy")
    g = None
    with det:
        det.reference_scoring = None
        plain = det.score([bump_cloud(30, seed=0)], keep_render=False)[0]
        g = plain.global_probs
    want = np_reference(scores[:, 0], scores[:, 1], g, np.arange(900), (30, 30), 0.25, 0.5, mvtec=False)
    assert abs(summary["samples"]["square"]["object_score"] - want["object"]) <= TOL
    np.testing.assert_allclose(scores[:, 2], want["points"], rtol=0, atol=TOL)


def test_reference_weights_are_checked() -> None:
    import argparse

    from infer_eval_support import fake_detector

    from align3d_rt.cli.scoring_options import apply_scoring
    from align3d_rt.errors import Align3DError

    det, _ = fake_detector(fusion_weight=0.0)
    with pytest.raises(Align3DError, match="only with --scoring reference"):
        apply_scoring(argparse.Namespace(scoring="ours", image_level_weight=None, point_level_weight=0.3), det)
    with pytest.raises(Align3DError, match="--image-level-weight nan: must be in"):
        apply_scoring(argparse.Namespace(scoring="reference", image_level_weight=float("nan"),
                                         point_level_weight=None), det)
    with pytest.raises(Align3DError, match="only with --scoring reference"):
        apply_scoring(argparse.Namespace(scoring="ours", no_image_map_blur=True), det)
    apply_scoring(argparse.Namespace(scoring="reference", image_level_weight=None, point_level_weight=None), det)
    # unset weights follow the run's fusion weight (0 for an imported single-prompt checkpoint)
    assert det.reference_scoring == ReferenceSettings(image_weight=0.0, point_weight=0.0)
    apply_scoring(argparse.Namespace(scoring="reference", image_level_weight=0.0, point_level_weight=0.5,
                                     no_image_map_blur=True), det)
    assert det.reference_scoring == ReferenceSettings(image_weight=0.0, point_weight=0.5, blur_image_map=False)


def test_eval_cli_reference_mode(synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval --scoring reference: records the mode, and its P-R/O-R differ from ours on the same data."""
    from infer_eval_support import fake_detector

    from align3d_rt.cli import eval as eval_cli
    from align3d_rt.cli import main

    results = {}
    for mode in ("ours", "reference"):
        det, _ = fake_detector(info={"backend": "fake", "run_config": {"dataset": "synthetic", "category": "ring"}})
        monkeypatch.setattr(eval_cli, "build_detector", lambda args, det=det: det)
        out = tmp_path / mode
        rc = main(["eval", "--protocol", "cross-dataset", "--dataset", "synthetic", "--root", str(synthetic_root),
                   "--run", str(tmp_path), "--out", str(out), "--categories", "ring", "--examples", "0",
                   "--scoring", mode])
        assert rc == 0
        man = json.loads((out / "manifest.json").read_text())
        assert man["scoring"]["mode"] == mode
        results[mode] = json.loads((out / "results.json").read_text())["classes"][0]["metrics"]
    assert results["ours"]["P-R"] is not None and results["reference"]["P-R"] is not None
    assert results["ours"] != results["reference"]
