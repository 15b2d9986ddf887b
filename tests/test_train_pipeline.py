"""End-to-end training with the tiny CLIP on a generated category: stage 1, stage 2, cache, resume, errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from align3d_rt.artifacts import run_dir as rd  # noqa: E402
from align3d_rt.errors import Align3DError, InputError, RunDirError  # noqa: E402
from align3d_rt.train import feature_cache as fc  # noqa: E402
from align3d_rt.train.runner import TrainConfig, train_run  # noqa: E402

EPOCHS2 = 8
LOSSES = ("seg3d", "seg2d", "cls_view", "cls_sample")


def _cfg(root: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(dataset="synthetic", root=root, category="dome", out=out, clip="align3d-tiny", epochs1=8,
                reweight_epochs=2, epochs2=EPOCHS2, dpca_epochs=3, max_samples=4, image_size=112, progress=False)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _records(run: Path, stage: int) -> list[dict]:
    lines = (run / rd.LOSSES).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["stage"] == stage]


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    return train_run(_cfg(synthetic_root, out))


def test_stage1_raises_alignment_cosine(trained: Path) -> None:
    cos = json.loads((trained / "stage1_summary.json").read_text())["cosine"]
    print(f"\nstage-1 cosine to RGB features: raw {cos['raw']}, aligner at init {cos['init']}, trained "
          f"{cos['trained']}")
    for part in ("global", "patch"):
        assert cos["trained"][part] > cos["init"][part]
    s1 = _records(trained, 1)
    assert len(s1) == 8 and [r["reweight"] for r in s1] == [False] * 6 + [True] * 2


def test_stage2_lowers_each_loss(trained: Path) -> None:
    s2 = _records(trained, 2)
    assert [r["epoch"] for r in s2] == list(range(1, EPOCHS2 + 1))
    assert [r["dpca_on"] for r in s2] == [False] * 5 + [True] * 3 and s2[-1]["dpca"] > 0 and "dpca" not in s2[0]
    print("\nstage-2 losses first -> last epoch:",
          {k: (round(s2[0][k], 4), round(s2[-1][k], 4)) for k in LOSSES})
    for k in LOSSES:
        assert s2[-1][k] < s2[0][k], k
        for branch in ("render", "aligned"):
            assert np.isfinite(s2[-1][f"{branch}_{k}"])


def test_load_run_round_trip(trained: Path) -> None:
    from align3d_rt.model.aligner import Aligner
    from align3d_rt.model.clip_backbone import load_clip
    from align3d_rt.model.prompts import PromptLearner
    from align3d_rt.train.checkpoint import load_trainable

    art = rd.load_run(trained)
    assert art.clip_name == "align3d-tiny" and art.clip_weights is None and art.clip_weights_id == "random:0"
    assert art.text.shape == (2, 2, 128) and art.text.dtype == np.float32
    assert art.render_settings.image_size == 112 and art.render_settings.preset == "mvtec9"
    assert art.fusion_weight == 0.5
    assert {"libraries", "seeds", "training", "samples"} <= set(art.config) and len(art.config["samples"]) == 4
    Aligner(128).load_state_dict({k: torch.from_numpy(v) for k, v in art.aligner_state.items()}, strict=True)
    model, _ = load_clip("align3d-tiny")
    for branch, file in enumerate((rd.PROMPTS_RENDER, rd.PROMPTS_ALIGNED)):
        pl = PromptLearner(model)
        load_trainable(pl, rd.load_tensors(trained / file), file)
        with torch.no_grad():
            np.testing.assert_allclose(pl().numpy(), art.text[branch], atol=1e-6)
    # the two branches learned different prompts
    assert not np.allclose(art.text[0], art.text[1])


def test_resume_matches_uninterrupted_run(trained: Path, synthetic_root: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = fc.render_and_encode

    def counting(*args: object, **kw: object) -> object:
        calls["n"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(fc, "render_and_encode", counting)
    out = tmp_path / "interrupted"
    train_run(_cfg(synthetic_root, out, stop_after=(2, 3)))
    assert calls["n"] == 0, "features must come from the cache of the first run"
    assert json.loads((out / "checkpoints" / "stage2.json").read_text())["epoch"] == 3
    with pytest.raises(RunDirError, match="incomplete run"):
        rd.load_run(out)
    with pytest.raises(RunDirError, match="--resume"):
        train_run(_cfg(synthetic_root, out))  # an existing run needs --resume
    with pytest.raises(RunDirError, match="category"):
        train_run(_cfg(synthetic_root, out, category="ring", resume=True))

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    ckpt = next((broken / "checkpoints").glob("stage2_epoch*.safetensors"))
    ckpt.write_bytes(ckpt.read_bytes()[:-16] + b"\x00" * 16)
    with pytest.raises(RunDirError, match="corrupt"):
        train_run(_cfg(synthetic_root, broken, resume=True))

    train_run(_cfg(synthetic_root, out, resume=True))
    for file in (rd.ALIGNER, rd.PROMPTS_RENDER, rd.PROMPTS_ALIGNED, rd.TEXT):
        want, got = rd.load_tensors(trained / file), rd.load_tensors(out / file)
        assert set(want) == set(got)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=1e-6, rtol=0)
    assert [r["total"] for r in _records(out, 2)] == pytest.approx([r["total"] for r in _records(trained, 2)], abs=1e-6)


def test_stage1_from_cache_without_clip_and_resume(trained: Path, synthetic_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clip(*args: object, **kw: object) -> None:
        raise AssertionError("CLIP must not be loaded when the cache is warm")

    monkeypatch.setattr(fc, "ViewEncoder", no_clip)
    monkeypatch.setattr(fc, "_ENCODERS", {})
    full = train_run(_cfg(synthetic_root, tmp_path / "s1", stage="1", epochs1=3, reweight_epochs=1))
    assert (full / rd.ALIGNER).is_file() and not (full / rd.TEXT).exists()
    with pytest.raises(RunDirError, match="incomplete"):
        rd.load_run(full)
    part = tmp_path / "s1_part"
    train_run(_cfg(synthetic_root, part, stage="1", epochs1=3, reweight_epochs=1, stop_after=(1, 1)))
    assert not (part / rd.ALIGNER).exists()
    with pytest.raises(RunDirError, match="training settings differ"):
        train_run(_cfg(synthetic_root, part, stage="1", epochs1=4, reweight_epochs=1, resume=True))
    train_run(_cfg(synthetic_root, part, stage="1", epochs1=3, reweight_epochs=1, resume=True))
    want, got = rd.load_tensors(full / rd.ALIGNER), rd.load_tensors(part / rd.ALIGNER)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6, rtol=0)
    assert [r["epoch"] for r in _records(part, 1)] == [1, 2, 3]


def test_feature_cache_reused_and_keyed_by_settings(trained: Path, synthetic_root: Path) -> None:
    import dataclasses

    from align3d_rt.data.readers import list_samples
    from align3d_rt.train.runner import render_settings_for, select_samples

    cfg = _cfg(synthetic_root, trained)
    refs = select_samples(list_samples("synthetic", synthetic_root, "dome", "test"), 4)
    settings = render_settings_for(cfg)
    built = []
    cache = fc.FeatureCache("align3d-tiny", None, settings, encoder_factory=lambda: built.append(1))
    entries = cache.prepare(refs, need_rgb=True)
    assert cache.encoded == 0 and not built and len(entries) == 4
    assert sorted(e.label for e in entries) == [0, 0, 1, 1]
    other = fc.FeatureCache("align3d-tiny", None, dataclasses.replace(settings, point_size=3))
    assert other.key(refs[0]) != cache.key(refs[0])
    rec = entries[0].load(("global", "patches", "pixels", "visible", "gt_masks"))
    v = settings.num_views
    assert rec["global"].shape == (v, 128) and rec["patches"].shape == (v, 577, 128)
    assert rec["gt_masks"].shape == (v, 112, 112) and rec["visible"].any(axis=0).all()


def test_bad_inputs(synthetic_root: Path, tmp_path: Path) -> None:
    from align3d_rt.data.synthetic import generate_mvtec_layout

    with pytest.raises(Align3DError, match="no RGB"):
        train_run(_cfg(synthetic_root, tmp_path / "a", dataset="real3d"))
    with pytest.raises(RunDirError, match="stage 2 needs"):
        train_run(_cfg(synthetic_root, tmp_path / "b", stage="2"))
    good_only = generate_mvtec_layout(tmp_path / "good_only", categories=["ring"], n_train=0, n_test_good=1,
                                      n_per_defect=0, n_validation=0, size=(40, 50))
    with pytest.raises(InputError, match="no anomalous samples"):
        train_run(_cfg(good_only, tmp_path / "c", category="ring"))
    assert not (tmp_path / "c" / rd.ALIGNER).exists()


def test_cli_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.cli import main

    rc = main(["train", "--dataset", "real3d", "--root", str(tmp_path), "--category", "x", "--out",
               str(tmp_path / "r"), "--clip", "align3d-tiny", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "stage 1" in err
