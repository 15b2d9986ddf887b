"""torchrun: rank info, shards, DDP loss weighting, merged eval scores (in-process), and real 2-process runs.

The 2-process tests start ``torchrun --standalone --nproc-per-node 2 -m align3d_rt -- ...`` (free ports:
--standalone picks them) on the tiny random CLIP and a small generated category, one thread per rank.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from align3d_rt import distributed as dist_util  # noqa: E402
from align3d_rt.errors import Align3DError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
TRAIN_ARGS = ["train", "--dataset", "synthetic", "--category", "dome", "--clip", "align3d-tiny", "--epochs1", "3",
              "--reweight-epochs", "1", "--epochs2", "3", "--dpca-epochs", "1", "--image-size", "64",
              "--batch-size", "3", "--no-progress"]  # 7 samples in global batches of 3, 3, 1


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(ALIGN3D_CACHE=str(cache), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), **extra)
    return env


def _single(args: list[str], cache: Path, timeout: int = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "align3d_rt", *args], cwd=REPO, env=_env(cache, **extra),
                          capture_output=True, text=True, timeout=timeout)


def _torchrun(args: list[str], cache: Path, timeout: int = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "align3d_rt", "--", *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(cache, **extra), capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- in-process: helpers and merging


def test_plain_run_is_rank_0_of_1(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    info = dist_util.env_rank_info()
    assert (info.rank, info.world_size, info.distributed, info.is_main) == (0, 1, False, True)
    with dist_util.session("cpu") as rank:  # no torchrun: no process group, nothing changes
        assert rank == dist_util.RankInfo() and not torch.distributed.is_initialized()
    assert dist_util.gather_objects("x") == ["x"] and dist_util.sum_floats({"a": 1.5}) == {"a": 1.5}


def test_env_rank_info_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert dist_util.env_rank_info() == dist_util.RankInfo(3, 4, 1, 2)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(Align3DError, match="inconsistent"):
        dist_util.env_rank_info()
    monkeypatch.setenv(dist_util.TIMEOUT_ENV, "12.5")
    assert dist_util.timeout_seconds() == 12.5
    monkeypatch.setenv(dist_util.TIMEOUT_ENV, "0")
    with pytest.raises(Align3DError, match=dist_util.TIMEOUT_ENV):
        dist_util.timeout_seconds()


def test_rank_slices_cover_each_global_batch_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from align3d_rt.train import ddp
    from align3d_rt.train.batches import batches, epoch_order

    for batch in batches(epoch_order(7, 0, 0), 3):
        got = []
        for rank in (0, 1):
            monkeypatch.setattr(dist_util, "_CURRENT", dist_util.RankInfo(rank, 2, rank, 2, "cpu"))
            got.append(ddp.rank_slice(batch))
        real = [s for s in got if s.share > 0]
        assert sorted(i for s in real for i in s.indices) == sorted(int(i) for i in batch)
        assert sum(s.share for s in got) == pytest.approx(1.0)
        for s in got:  # the share is the rank's fraction of the global batch; an empty rank runs 1 sample at 0
            assert s.share == pytest.approx(len(s.indices) / len(batch) if s.share else 0.0)
            assert len(s.indices) >= 1


def test_fail_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dist_util.FAIL_ENV, "1:train")
    dist_util.fail_point("train")  # rank 0: not the failing rank
    monkeypatch.setenv(dist_util.FAIL_ENV, "0:train")
    with pytest.raises(RuntimeError, match="injected failure"):
        dist_util.fail_point("train")
    dist_util.fail_point("eval")


def test_merge_restores_split_order_and_examples() -> None:
    """What rank 0 builds from the gathered shards equals what one process builds from the whole split."""
    from align3d_rt.eval.pictures import Example
    from align3d_rt.eval.protocols import ClassScores, SampleScores, _merge

    class Ref:
        def __init__(self, i: int) -> None:
            self.path = Path(f"s{i}.tiff")

    refs = [Ref(i) for i in range(5)]
    recs = [SampleScores(object_score=0.1 * i, object_label=i % 2, point_scores=np.full(3, i, np.float32),
                         point_labels=np.zeros(3, np.uint8)) for i in range(5)]
    ex = {i: Example(sample_id=f"s{i}", category="c", is_anomalous=bool(i % 2), object_score=0.0,
                     images=np.zeros((1, 2, 2, 3), np.uint8), maps=np.zeros((1, 2, 2), np.float32), gt_masks=None)
          for i in range(5)}
    shard0 = ([(0, recs[0]), (2, "s2.tiff: broken"), (4, recs[4])], [(0, ex[0]), (4, ex[4])])
    shard1 = ([(1, recs[1]), (3, recs[3])], [(1, ex[1]), (3, ex[3])])
    acc, failed, examples = _merge([shard0, shard1], refs, n_examples=1)
    whole = ClassScores()
    for i in (0, 1, 3, 4):
        whole.append(recs[i])
    assert acc.object_scores == whole.object_scores and acc.object_labels == whole.object_labels
    assert [p[0] for p in acc.point_scores] == [0, 1, 3, 4]
    assert failed == {"s2.tiff": "s2.tiff: broken"}
    assert [e.sample_id for e in examples] == ["s0", "s1"]


def _records(rng: np.random.Generator, n_points: list[int], v: int = 2, size: int = 32) -> list[dict[str, np.ndarray]]:
    """Stage-2 cache records (feature_cache layout) with random features and labels, N points each."""
    out = []
    for i, n in enumerate(n_points):
        labels = (rng.random(n) < 0.3).astype(np.uint8)
        out.append({"global": rng.standard_normal((v, 128)).astype(np.float16),
                    "patches": rng.standard_normal((v, 577, 128)).astype(np.float16),
                    "pixels": rng.integers(0, size, (v, n, 2)).astype(np.int16),
                    "visible": rng.random((v, n)) < 0.8, "point_labels": labels,
                    "gt_masks": (rng.random((v, size, size)) < 0.2).astype(np.uint8),
                    "label": np.array([i % 2], np.uint8)})
    return out


def test_share_weighted_shards_give_the_global_batch_gradient() -> None:
    """The DDP weighting (train.ddp): sum over shards of share * grad(shard loss) == grad(global batch loss),
    for unequal shards with different padding; the plain mean of shard means does not."""
    from align3d_rt.model.clip_backbone import load_clip
    from align3d_rt.train.batches import collate_stage2
    from align3d_rt.train.stage1 import new_aligner
    from align3d_rt.train.stage2 import new_prompt_learners, stage2_step_losses

    clip, _ = load_clip("align3d-tiny")
    recs = _records(np.random.default_rng(0), [10, 14, 7])
    aligner = new_aligner(128, 0).eval()
    prompts = new_prompt_learners(clip, 0)
    params = [p for m in prompts.values() for p in m.parameters() if p.requires_grad]

    def grads(batches: list[tuple[list[int], float]]) -> list[torch.Tensor]:
        for p in params:
            p.grad = None
        for idx, weight in batches:
            loss, _ = stage2_step_losses(collate_stage2([recs[i] for i in idx]), aligner, prompts, True, 0.05)
            (loss * weight).backward()
        return [p.grad.clone() for p in params]

    whole = grads([([0, 1, 2], 1.0)])
    sharded = grads([([0, 2], 2 / 3), ([1], 1 / 3)])   # rank 0 takes batch[0::2], rank 1 batch[1::2]
    naive = grads([([0, 2], 0.5), ([1], 0.5)])          # mean of per-rank means
    scale = max(float(g.abs().max()) for g in whole)
    print("\nshard-weighted vs whole: "
          f"{max(float((a - b).abs().max()) for a, b in zip(whole, sharded, strict=True)) / scale:.1e}, "
          "mean of means vs whole: "
          f"{max(float((a - b).abs().max()) for a, b in zip(whole, naive, strict=True)) / scale:.1e} (relative)")
    assert max(float((a - b).abs().max()) for a, b in zip(whole, sharded, strict=True)) < 1e-5 * scale
    assert max(float((a - b).abs().max()) for a, b in zip(whole, naive, strict=True)) > 1e-3 * scale


# ---------------------------------------------------------------- real torchrun jobs


@pytest.fixture(scope="module")
def dome_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from align3d_rt.data.synthetic import generate_mvtec_layout

    root = tmp_path_factory.mktemp("ddp_data")
    return generate_mvtec_layout(root, categories=["dome"], n_train=0, n_validation=0, n_test_good=2,
                                 n_per_defect=1, seed=0)


def _tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def single_run(dome_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """The one-process reference run: (run folder, its feature cache, wall seconds)."""
    tmp = tmp_path_factory.mktemp("ddp_single")
    t0 = time.perf_counter()
    one = _single([*TRAIN_ARGS, "--root", str(dome_root), "--out", str(tmp / "one")], tmp / "cache_one")
    assert one.returncode == 0, one.stderr[-2000:]
    return tmp / "one", tmp / "cache_one", time.perf_counter() - t0


def _assert_same_weights(a: Path, b: Path) -> float:
    """Every trained tensor of run b equals run a's; returns the largest difference.

    Aligner: 1e-5. Prompts and text: half an fp16 step at the deep prompts' magnitude (at least 1e-5).
    The forward rounds deep prompts to fp16 (the reference's fidelity rule), so an all-reduce-order
    difference of 1e-8 can put a value on the other side of a rounding boundary: one fp16 step in
    the forward (6e-5 at |x| ~ 0.08), which moved trained prompts and text by up to 4.5e-6 here
    (2.7e-7 without the rounding)."""
    from align3d_rt.artifacts import run_dir as rd

    deep = np.abs(_tensors(a / rd.PROMPTS_RENDER)["deep_ctx"]).max()
    prompt_tol = max(1e-5, 0.5 * float(np.spacing(np.float16(deep))))
    worst = 0.0
    for f in (rd.ALIGNER, rd.PROMPTS_RENDER, rd.PROMPTS_ALIGNED, rd.TEXT):
        ta, tb = _tensors(a / f), _tensors(b / f)
        assert ta.keys() == tb.keys()
        for k in ta:
            worst = max(worst, float(np.abs(ta[k] - tb[k]).max()))
            atol = 1e-5 if f == rd.ALIGNER else prompt_tol
            np.testing.assert_allclose(tb[k], ta[k], rtol=0, atol=atol, err_msg=f"{f}:{k}")
    return worst


def test_two_process_training_equals_single_process(dome_root: Path, tmp_path: Path,
                                                    single_run: tuple[Path, Path, float],
                                                    record_figure: Callable[[str], None]) -> None:
    """Same global batch: weights, loss history and cached features of a 2-rank run equal one process's."""
    from align3d_rt.artifacts import run_dir as rd

    a, cache_one, t_one = single_run
    t0 = time.perf_counter()
    two = _torchrun([*TRAIN_ARGS, "--root", str(dome_root), "--out", str(tmp_path / "two")], tmp_path / "cache_two")
    t_two = time.perf_counter() - t0
    assert two.returncode == 0, two.stderr[-2000:]
    record_figure(f"training wall time (cold feature cache, 1 thread per process): 1 process {t_one:.1f} s, "
                  f"torchrun 2 processes {t_two:.1f} s")
    assert two.stdout.count("run directory:") == 1  # rank 0 alone reports (and writes)
    b = tmp_path / "two"
    assert sorted(p.name for p in a.rglob("*")) == sorted(p.name for p in b.rglob("*"))
    record_figure(f"largest weight difference, 2 ranks vs 1 process: {_assert_same_weights(a, b):.2e}")
    la = [json.loads(x) for x in (a / rd.LOSSES).read_text().splitlines()]
    lb = [json.loads(x) for x in (b / rd.LOSSES).read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in la] == [(r["stage"], r["epoch"]) for r in lb] and len(la) == 6
    for ra, rb in zip(la, lb, strict=True):  # the recorded losses are the global batch's, not rank 0's share
        assert ra.keys() == rb.keys()
        for k, v in ra.items():
            if isinstance(v, float):
                assert rb[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
    cos_a = json.loads((a / "stage1_summary.json").read_text())["cosine"]
    cos_b = json.loads((b / "stage1_summary.json").read_text())["cosine"]
    for when in cos_a:
        for part in cos_a[when]:
            assert cos_b[when][part] == pytest.approx(cos_a[when][part], abs=1e-5)
    # the sharded feature cache holds what one process computes (each rank wrote its own samples)
    files_a = sorted(cache_one.rglob("*.safetensors"))
    files_b = sorted((tmp_path / "cache_two").rglob("*.safetensors"))
    assert [p.name for p in files_a] == [p.name for p in files_b] and len(files_a) == 14
    for fa, fb in zip(files_a, files_b, strict=True):
        ta, tb = _tensors(fa), _tensors(fb)
        assert all(np.array_equal(ta[k], tb[k]) for k in ta), fa.name
    assert not list((tmp_path / "cache_two").rglob(".*"))  # no temporary files left behind


@pytest.mark.heavy
def test_two_process_resume_equals_single_process(dome_root: Path, tmp_path: Path,
                                                  single_run: tuple[Path, Path, float]) -> None:
    """torchrun stopped after stage-2 epoch 1 (--stop-after), then resumed by torchrun: same weights as one
    uninterrupted process (rank 0's checkpoint is what every rank restores)."""
    a, cache_one, _ = single_run
    args = [*TRAIN_ARGS, "--root", str(dome_root), "--out", str(tmp_path / "two")]
    first = _torchrun([*args, "--stop-after", "2:1"], cache_one)
    assert first.returncode == 0, first.stderr[-2000:]
    assert not (tmp_path / "two" / "text_embeddings.safetensors").exists()
    second = _torchrun([*args, "--resume"], cache_one)
    assert second.returncode == 0, second.stderr[-2000:]
    print(f"\nlargest weight difference, stopped + resumed 2-rank run vs 1 process: "
          f"{_assert_same_weights(a, tmp_path / 'two'):.2e}")


@pytest.mark.parametrize("point", [pytest.param("train", marks=pytest.mark.heavy), "stage2"])
def test_a_dying_rank_aborts_every_rank(dome_root: Path, tmp_path: Path, point: str) -> None:
    """Rank 1 raises (before the first collective / between two DDP steps): torchrun ends, rank 1 named."""
    args = [*TRAIN_ARGS, "--root", str(dome_root), "--out", str(tmp_path / "run"), "--max-samples", "2"]
    t0 = time.perf_counter()
    res = _torchrun(args, tmp_path / "cache", timeout=240, ALIGN3D_TEST_FAIL=f"1:{point}",
                    ALIGN3D_DIST_TIMEOUT="60")
    took = time.perf_counter() - t0
    assert res.returncode != 0
    lines = re.findall(r"align3d-rt train: error: rank 1 of 2: [^\r\n]*", res.stderr)
    assert len(lines) == 1 and "injected failure" in lines[0], res.stderr[-3000:]
    package = str(REPO / "align3d_rt")
    own, _, summary = res.stderr.partition("ChildFailedError")  # the ranks' output, then torchrun's summary
    traceback_lines = [ln for ln in own.splitlines() if 'File "' in ln and package in ln]
    assert not traceback_lines, own[-6000:]  # no traceback from a rank
    root_cause = summary.partition("Root Cause")[2]  # torchrun names rank 1 and shows its error (error file)
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", root_cause) and "injected failure" in root_cause
    assert took < 180, took  # well below the hang it would be without torchrun/timeouts (>= 60 s collective bound)
    print(f"\nrank 1 died at '{point}': torchrun exited {res.returncode} after {took:.1f} s")


@pytest.mark.heavy
def test_a_stuck_rank_times_out(dome_root: Path, tmp_path: Path) -> None:
    """Rank 1 hangs: rank 0's collective gives up after ALIGN3D_DIST_TIMEOUT, the job ends (no hang)."""
    args = [*TRAIN_ARGS, "--root", str(dome_root), "--out", str(tmp_path / "run"), "--max-samples", "2"]
    t0 = time.perf_counter()
    res = _torchrun(args, tmp_path / "cache", timeout=240, ALIGN3D_TEST_FAIL="1:train:hang", ALIGN3D_DIST_TIMEOUT="8")
    took = time.perf_counter() - t0
    assert res.returncode != 0
    assert "rank 0 of 2: stopped: a collective failed" in res.stderr, res.stderr[-3000:]
    assert took < 120, took


@pytest.mark.heavy
def test_sharded_eval_equals_single_process(dome_root: Path, tmp_path: Path) -> None:
    """2 ranks each score half of the class; rank 0's tables and example pictures equal one process's."""
    from align3d_rt.train.random_run import random_run_dir

    run = random_run_dir(tmp_path / "run", category="box")  # untrained tiny run: the scores are what matter
    base = ["eval", "--protocol", "one-vs-rest", "--dataset", "synthetic", "--root", str(dome_root), "--run", str(run),
            "--batch-size", "2", "--examples", "1"]
    one = _single([*base, "--out", str(tmp_path / "one")], tmp_path / "cache")
    two = _torchrun([*base, "--out", str(tmp_path / "two")], tmp_path / "cache")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    ra = json.loads((tmp_path / "one" / "results.json").read_text())
    rb = json.loads((tmp_path / "two" / "results.json").read_text())
    for ca, cb in zip(ra["classes"], rb["classes"], strict=True):
        ca.pop("seconds")
        cb.pop("seconds")
        assert ca == cb
    assert (tmp_path / "one" / "results.md").read_text() == (tmp_path / "two" / "results.md").read_text()
    assert sorted(p.name for p in (tmp_path / "one" / "results_examples").iterdir()) == \
        sorted(p.name for p in (tmp_path / "two" / "results_examples").iterdir())
    assert two.stdout.count("| dome |") == 1


@pytest.mark.heavy
def test_a_dying_rank_aborts_a_sharded_eval(dome_root: Path, tmp_path: Path) -> None:
    """Rank 1 dies after scoring its shard: the job ends non-zero naming rank 1; no manifest says running or
    complete."""
    from align3d_rt.train.random_run import random_run_dir

    run = random_run_dir(tmp_path / "run", category="box")
    out = tmp_path / "eval"
    res = _torchrun(["eval", "--dataset", "synthetic", "--root", str(dome_root), "--run", str(run), "--out", str(out),
                     "--examples", "0"], tmp_path / "cache", timeout=240, ALIGN3D_TEST_FAIL="1:eval",
                    ALIGN3D_DIST_TIMEOUT="60")
    assert res.returncode != 0
    # rank 0's progress bar (carriage returns, no newline) may share a line with rank 1's message
    lines = re.findall(r"align3d-rt eval: error: rank 1 of 2: [^\r\n]*", res.stderr)
    assert len(lines) == 1 and "injected failure at 'eval'" in lines[0], res.stderr[-3000:]
    assert not (out / "results.json").exists()
    # No class finished on every rank: the stop rule (eval/protocols.py) removes the manifest, or, when
    # the job was cut off while publishing, it says stopped; it never says running or complete.
    if (out / "manifest.json").is_file():
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] in ("stopped", "interrupted"), manifest["status"]
