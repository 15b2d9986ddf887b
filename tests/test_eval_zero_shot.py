"""Zero-shot transfer (heavy): train on one generated category, test on the others and on a category
built from the real MVTec 3D-AD tire masks; localisation must beat chance; object scores must not rank below it."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from align3d_rt.cli.demo import DemoConfig, generate_data, train
from align3d_rt.eval.protocols import run_protocol
from align3d_rt.eval.report import ClassResult, mean_metrics
from align3d_rt.runtime.detector import Detector

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoConfig, Path, Path]:
    cfg = DemoConfig(out=tmp_path_factory.mktemp("zero_shot"), precisions=(), progress=False)
    root = generate_data(cfg)
    return cfg, root, train(cfg, root)


def test_one_vs_rest_above_chance(trained: tuple[DemoConfig, Path, Path], tmp_path: Path) -> None:
    cfg, root, run = trained
    outcome = run_protocol(Detector.from_run(run), "one-vs-rest", "synthetic", root, tmp_path / "eval",
                           batch_size=4, progress=False)
    assert cfg.train_category not in [r.category for r in outcome.results]
    mean = mean_metrics(outcome.results)
    print(f"one-vs-rest means: {mean}")
    assert mean["P-R"] > 0.6  # reference protocol (blurred 336 grid, background included)
    # The honest figures: per point on valid points only, and per object (demo size: 56 objects).
    assert mean["P-R (pt)"] > 0.58
    # Object level: 56 objects (14 per class) cannot show the tiny model's weak detection above chance
    # (one class's AUROC has a standard error near 0.09; the mean moved 0.55-0.66 between versions). The
    # stated rule instead: the stratified rank-sum test over all classes must not find the object scores
    # *below* chance (one-sided 5 %), which an inverted or constant object score would be.
    z = stratified_rank_sum_z(outcome.results)
    print(f"object scores: stratified rank-sum z = {z:.2f}")
    assert z > -1.645


def stratified_rank_sum_z(results: list[ClassResult]) -> float:
    """z of the summed Mann-Whitney U over classes (U = AUROC * n_bad * n_good per class) against its null
    (mean n_bad*n_good/2, variance n_bad*n_good*(n+1)/12 per class, no ties): > 0 ranks defects higher."""
    excess = variance = 0.0
    for res in results:
        n_bad, n_good = res.n_anomalous, res.n_samples - res.n_anomalous
        auroc = res.metrics["O-R"]
        assert auroc is not None and n_bad > 0 and n_good > 0, res.category
        pairs = n_bad * n_good
        excess += (auroc - 0.5) * pairs
        variance += pairs * (res.n_samples + 1) / 12.0
    return excess / math.sqrt(variance)


def test_real_tire_masks_above_chance(trained: tuple[DemoConfig, Path, Path], shared_tire_root: Path,
                                      tmp_path: Path) -> None:
    from align3d_rt.data.synthetic import mvtec_from_real_masks

    _, _, run = trained
    tire_root = mvtec_from_real_masks(shared_tire_root, tmp_path / "tire", max_per_label=4, n_train=0, n_validation=0)
    outcome = run_protocol(Detector.from_run(run), "cross-dataset", "mvtec3d", tire_root, tmp_path / "eval",
                           batch_size=4, progress=False)
    (res,) = outcome.results
    assert res.category == "tire" and res.n_anomalous > 0
    print(f"tire from real masks: {res.metrics}")
    assert res.metrics["P-R"] > 0.6
    assert res.metrics["P-R (pt)"] > 0.6
