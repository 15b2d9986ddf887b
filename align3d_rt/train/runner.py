"""End-to-end training: checks, feature cache, stage 1, stage 2, run directory, resume."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align3d_rt import distributed as dist_util
from align3d_rt.artifacts import run_dir as rd
from align3d_rt.errors import Align3DError, InputError, RunDirError
from align3d_rt.render.views import RenderSettings
from align3d_rt.versions import library_versions

__all__ = ["TrainConfig", "train_run", "render_settings_for", "select_samples", "DATASETS"]

DATASETS = ("mvtec3d", "eyecandies", "real3d", "synthetic")
RGB_DATASETS = ("mvtec3d", "eyecandies", "synthetic")
CLIP_SEED = 0  # random-init seed of test CLIPs; real weights ignore it


@dataclass
class TrainConfig:
    """Everything a training run depends on (plus a few run-control switches at the end)."""

    dataset: str
    root: str | Path
    category: str
    out: str | Path
    clip: str = "ViT-L-14-336"
    clip_weights: str | None = None
    stage: str = "both"                 # 'both' | '1' | '2'
    resume: bool = False
    epochs1: int = 250
    reweight_epochs: int = 50
    reweight_lambda: float = 1.0
    epochs2: int = 15
    dpca_epochs: int = 5
    dpca_scale: float = 0.05            # the paper's value; the reference code's default is 0.1
    batch_size: int = 4
    lr: float = 1e-3
    seed: int = 0
    fusion_weight: float = 0.5
    preset: str | None = None           # None = the dataset's default (render.settings_for)
    renderer: str = "splat"
    image_size: int | None = None       # None = the settings' 336 (smaller only for quick tests/demos)
    max_samples: int | None = None
    # run control (not part of the run's identity)
    device: str = "auto"                # 'auto' | 'cpu' | 'cuda'
    progress: bool = True
    stop_after: tuple[int, int] | None = None   # (stage, epochs): stop once that stage finished that many epochs


def render_settings_for(cfg: TrainConfig) -> RenderSettings:
    from align3d_rt.render.views import VIEW_PRESETS, settings_for

    settings = settings_for(cfg.dataset, cfg.category)
    changes: dict[str, Any] = {"renderer": cfg.renderer}
    if cfg.image_size is not None:
        if cfg.image_size < 16:
            raise Align3DError(f"--image-size {cfg.image_size}: must be at least 16")
        changes["image_size"] = int(cfg.image_size)
    if cfg.preset is not None:
        if cfg.preset not in VIEW_PRESETS:
            raise Align3DError(f"--preset {cfg.preset}: unknown view preset (known: {', '.join(VIEW_PRESETS)})")
        changes["preset"] = cfg.preset
    return dataclasses.replace(settings, **changes)


def _is_anomalous(ref: Any) -> bool:
    return str(getattr(ref, "label_name", "good")) != "good"


def select_samples(refs: list[Any], max_samples: int | None) -> list[Any]:
    """All refs (sorted by path), or a deterministic subset alternating anomalous and good ones."""
    refs = sorted(refs, key=lambda r: str(r.path))
    if max_samples is None or max_samples >= len(refs):
        return refs
    bad = [r for r in refs if _is_anomalous(r)]
    good = [r for r in refs if not _is_anomalous(r)]
    out: list[Any] = []
    while len(out) < max_samples and (bad or good):
        for pool in (bad, good):
            if pool and len(out) < max_samples:
                out.append(pool.pop(0))
    return sorted(out, key=lambda r: str(r.path))


DPCA_SCALE_PAPER = 0.05      # Align3D-AD paper's text (our default)
DPCA_SCALE_REFERENCE = 0.1   # the public reference code's default


def dpca_scale_note(scale: float) -> str:
    """Which published value a DpCA scale is (recorded in the run config)."""
    if scale == DPCA_SCALE_PAPER:
        return "0.05: the paper's value (default); the reference code uses 0.1 (--dpca-scale 0.1)"
    if scale == DPCA_SCALE_REFERENCE:
        return "0.1: the reference code's default; the paper states 0.05"
    return f"{scale}: set by the user (paper 0.05, reference code 0.1)"


def _validate(cfg: TrainConfig) -> None:
    if cfg.dataset not in DATASETS:
        raise Align3DError(f"--dataset {cfg.dataset}: unknown (choose from {', '.join(DATASETS)})")
    if cfg.stage not in ("1", "2", "both"):
        raise Align3DError(f"--stage {cfg.stage}: must be 1, 2 or both")
    for name in ("epochs1", "epochs2", "batch_size"):
        if int(getattr(cfg, name)) < 1:
            raise Align3DError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be at least 1")
    if not 0 <= cfg.reweight_epochs <= cfg.epochs1:
        raise Align3DError(f"--reweight-epochs {cfg.reweight_epochs}: must be in 0..epochs1 ({cfg.epochs1})")
    if not 0 <= cfg.dpca_epochs <= cfg.epochs2:
        raise Align3DError(f"--dpca-epochs {cfg.dpca_epochs}: must be in 0..epochs2 ({cfg.epochs2})")
    if not 0.0 <= cfg.fusion_weight <= 1.0:
        raise Align3DError(f"--fusion-weight {cfg.fusion_weight}: must be in [0, 1]")
    if cfg.max_samples is not None and cfg.max_samples < 1:
        raise Align3DError(f"--max-samples {cfg.max_samples}: must be at least 1")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise Align3DError(f"--lr {cfg.lr}: must be a finite number above 0")
    for name in ("reweight_lambda", "dpca_scale"):
        value = float(getattr(cfg, name))
        if not (math.isfinite(value) and value >= 0):
            raise Align3DError(f"--{name.replace('_', '-')} {value}: must be a finite number >= 0")
    if cfg.stage in ("1", "both") and cfg.dataset not in RGB_DATASETS:
        raise Align3DError(f"--dataset {cfg.dataset}: has no RGB, so stage 1 (RGB alignment) cannot run on it; "
                           f"train stage 1 on mvtec3d or eyecandies")


def _identity(config: dict) -> dict:
    """The parts of a config that must match when a run directory is reused."""
    keys = ("format", "format_version", "version", "dataset", "category", "clip", "render_settings")
    ident = {k: config.get(k) for k in keys}
    ident["seed"] = config.get("training", {}).get("seed")
    ident["max_samples"] = config.get("training", {}).get("max_samples")
    return json.loads(json.dumps(ident, sort_keys=True, default=str))


def _build_config(cfg: TrainConfig, settings: RenderSettings, weights_id: str, samples: list[str]) -> dict:
    from align3d_rt import __version__

    optim = {"batch_size": cfg.batch_size, "lr": cfg.lr, "betas": [0.5, 0.999]}
    training = {
        "stage1": {"epochs": cfg.epochs1, "reweight_epochs": cfg.reweight_epochs,
                   "reweight_lambda": cfg.reweight_lambda, **optim},
        "stage2": {"epochs": cfg.epochs2, "dpca_epochs": cfg.dpca_epochs, "dpca_scale": cfg.dpca_scale,
                   "dpca_scale_note": dpca_scale_note(cfg.dpca_scale), **optim},
        "seed": cfg.seed, "max_samples": cfg.max_samples, "split": "test",
    }
    return {
        "format": rd.RUN_FORMAT, "format_version": rd.RUN_FORMAT_VERSION, "version": __version__,
        "dataset": cfg.dataset, "category": cfg.category, "root": str(Path(cfg.root).resolve()),
        "clip": {"name": cfg.clip, "weights": _weights_path(cfg.clip_weights),
                 "weights_id": weights_id, "init_seed": CLIP_SEED},
        "render_settings": settings.to_dict(), "training": training,
        "seeds": {"training": cfg.seed, "clip_init": CLIP_SEED}, "fusion_weight": cfg.fusion_weight,
        "libraries": library_versions(), "samples": samples,
    }


def _weights_path(weights: str | None) -> str | None:
    """The CLIP weights as the run records them: an absolute, resolved path (or None / 'random')."""
    if weights is None or weights == "random":
        return weights
    return str(Path(weights).expanduser().resolve())


def _open_run(cfg: TrainConfig, out: Path, config: dict) -> dict:
    """Create or reuse the run directory; returns the config to write (checks compatibility)."""
    exists = (out / rd.CONFIG).is_file()
    if not exists:
        if cfg.stage == "2":
            raise RunDirError(f"{out}: stage 2 needs a finished stage-1 run here (no {rd.CONFIG}); "
                              f"run `align3d-rt train --stage 1 --out {out}` first")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RunDirError(f"{out}: exists and is not an align3d_rt run directory; choose another --out")
        return config
    old = rd.read_config(out)
    if not cfg.resume and cfg.stage != "2":
        raise RunDirError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
    if _identity(old) != _identity(config):
        diff = [k for k, v in _identity(config).items() if _identity(old).get(k) != v]
        raise RunDirError(f"{out}: run was made with another {', '.join(diff)}; use a new --out "
                          f"(or the same settings to resume)")
    if cfg.resume:
        old_t = json.loads(json.dumps(old.get("training", {})))
        new_t = json.loads(json.dumps(config["training"]))
        if old_t != new_t:
            diff = sorted(k for k in set(old_t) | set(new_t) if old_t.get(k) != new_t.get(k))
            raise RunDirError(f"{out}: training settings differ from the interrupted run ({', '.join(diff)}); "
                              f"resume with the same settings or use a new --out")
    merged = dict(old)
    merged["training"] = dict(old["training"], stage2=config["training"]["stage2"])
    merged["libraries"] = config["libraries"]
    merged["fusion_weight"] = config["fusion_weight"]
    return merged


def _check_samples(cfg: TrainConfig, refs: list[Any], need_stage2: bool, need_rgb: bool) -> None:
    where = f"{cfg.root} ({cfg.dataset} {cfg.category}, test split)"
    if not refs:
        raise InputError(f"{where}: no samples found")
    bad = [r for r in refs if _is_anomalous(r)]
    if need_stage2:
        if not bad:
            raise InputError(f"{where}: no anomalous samples; stage 2 needs a category with anomalies")
        sample = bad[0].load()
        if sample.point_labels is None or not sample.point_labels.any():
            raise InputError(f"{bad[0].path}: anomalous sample without point labels; stage 2 needs them")
    if need_rgb:
        sample = refs[0].load()
        if sample.colors is None:
            raise InputError(f"{refs[0].path}: no RGB colours; stage 1 needs RGB renders")


def _device(name: str) -> str:
    chosen = dist_util.current().device  # under torchrun: the session's 'cpu' / 'cuda:LOCAL_RANK'
    if chosen is not None:
        return chosen
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_run(cfg: TrainConfig) -> Path:
    """Train (or resume) a run into cfg.out and return its path. See DESIGN.md section 1.

    Under torchrun (an open ``distributed.session``) every rank runs this: the feature cache and the
    global batches are sharded, DDP averages the gradients, and only rank 0 writes the run directory.
    """
    _validate(cfg)
    from align3d_rt.data.readers import list_samples
    from align3d_rt.train.feature_cache import FeatureCache

    out = Path(cfg.out)
    settings = render_settings_for(cfg)
    device = _device(cfg.device)
    refs = select_samples(list_samples(cfg.dataset, cfg.root, cfg.category, "test"), cfg.max_samples)
    cache = FeatureCache(cfg.clip, cfg.clip_weights, settings, clip_seed=CLIP_SEED, device=device)
    config = _build_config(cfg, settings, cache.weights_id, [str(r.path) for r in refs])
    config = _open_run(cfg, out, config)

    stage1_done = (out / rd.ALIGNER).is_file() and (cfg.resume or cfg.stage == "2")
    run1 = cfg.stage in ("1", "both") and not stage1_done
    run2 = cfg.stage in ("2", "both")
    if cfg.stage == "2" and not (out / rd.ALIGNER).is_file():
        raise RunDirError(f"{out}: no {rd.ALIGNER}; finish stage 1 first (`align3d-rt train --stage 1 --resume`)")
    if run2 and cfg.resume and all((out / f).is_file() for f in rd.FINAL_FILES):
        return out  # already finished
    _check_samples(cfg, refs, need_stage2=run2, need_rgb=run1)
    main = dist_util.is_main()
    fresh = not (out / rd.CONFIG).is_file()
    dist_util.barrier()  # every rank has checked the folder before rank 0 changes it
    if not fresh and main:
        rd.write_config(out, config)
    entries = cache.prepare(refs, need_rgb=run1, progress=cfg.progress)  # loads CLIP: bad weights fail here
    if fresh and main:
        _create_run_dir(out, config)  # only now: a failed start-up leaves nothing that blocks the retry
    dist_util.fail_point("train")
    dist_util.barrier()

    try:
        if run1:
            finished = _run_stage1(cfg, out, entries, device)
            dist_util.barrier()  # rank 0 has written the aligner that stage 2 reads
            if not finished:
                return out
        if run2:
            _run_stage2(cfg, out, entries, cache, device)
    except BaseException:
        if fresh and main:
            _remove_unresumable(out)
        raise
    return out


def _remove_unresumable(out: Path) -> None:
    """A new run that failed (e.g. the disk filled up) before any finished epoch or stage result: remove it,
    so no half run directory is left and the retry is not refused; one with something to resume stays."""
    from align3d_rt.artifacts.run_dir import CHECKPOINTS

    keep = (out / rd.ALIGNER).is_file() or any((out / CHECKPOINTS).glob("stage*.json"))
    if not keep:
        shutil.rmtree(out, ignore_errors=True)


def _create_run_dir(out: Path, config: dict) -> None:
    """Create ``out`` holding config.json in one rename (a new path, or an empty folder replaced)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a run is an ordinary folder
        rd.write_config(tmp, config)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.rename(tmp, out)  # fails (no replacement) if something appeared at ``out`` meanwhile
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunDirError(f"{out}: cannot create the run directory ({err.strerror or err})") from None


def _run_stage1(cfg: TrainConfig, out: Path, entries: list[Any], device: str) -> bool:
    from align3d_rt.train.stage1 import Stage1Settings, aligner_state_numpy, train_stage1

    s1 = Stage1Settings(epochs=cfg.epochs1, reweight_epochs=cfg.reweight_epochs, reweight_lambda=cfg.reweight_lambda,
                        batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, device=device)
    dim = int(entries[0].load(["global"])["global"].shape[-1])
    stop = cfg.stop_after[1] if cfg.stop_after and cfg.stop_after[0] == 1 else None
    res = train_stage1(entries, dim, out, s1, resume=cfg.resume, stop_after=stop, progress=cfg.progress)
    if not res.finished:
        return False
    if not dist_util.is_main():
        return True
    rd.save_tensors(out / rd.ALIGNER, aligner_state_numpy(res.aligner), {"stage": "1"})
    from align3d_rt.io_utils import write_json_atomic

    write_json_atomic(out / "stage1_summary.json", {"cosine": res.cosine, "last_epoch": res.history[-1]})
    if cfg.progress:
        c = res.cosine
        print(f"stage 1: mean cosine to RGB features (global / patch): raw {c['raw']['global']:.4f} / "
              f"{c['raw']['patch']:.4f}, aligner at init {c['init']['global']:.4f} / {c['init']['patch']:.4f}, "
              f"trained {c['trained']['global']:.4f} / {c['trained']['patch']:.4f}", file=sys.stderr)
    return True


def _run_stage2(cfg: TrainConfig, out: Path, entries: list[Any], cache: Any, device: str) -> None:
    import torch

    from align3d_rt.train.checkpoint import trainable_state
    from align3d_rt.train.stage1 import new_aligner
    from align3d_rt.train.stage2 import Stage2Settings, train_stage2

    state = rd.load_tensors(out / rd.ALIGNER, "aligner weights")
    dim = int(state["global_mlp.0.weight"].shape[0]) if "global_mlp.0.weight" in state else None
    if dim is None:
        raise RunDirError(f"{out / rd.ALIGNER}: not an Aligner state (no global_mlp.0.weight); re-run stage 1")
    aligner = new_aligner(dim, cfg.seed)
    try:
        aligner.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        raise RunDirError(f"{out / rd.ALIGNER}: does not fit Aligner({dim}) ({str(err).splitlines()[0]})") from None
    # a fresh stage 2 replaces any earlier result: never leave a stale complete-looking run
    if not cfg.resume and dist_util.is_main():
        for f in (rd.TEXT, rd.PROMPTS_RENDER, rd.PROMPTS_ALIGNED):
            (out / f).unlink(missing_ok=True)
    clip_model = cache.encoder.model
    s2 = Stage2Settings(epochs=cfg.epochs2, dpca_epochs=cfg.dpca_epochs, dpca_scale=cfg.dpca_scale,
                        batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, device=device)
    stop = cfg.stop_after[1] if cfg.stop_after and cfg.stop_after[0] == 2 else None
    res = train_stage2(entries, clip_model, aligner, out, s2, resume=cfg.resume, stop_after=stop, progress=cfg.progress)
    if not res.finished or not dist_util.is_main():
        return
    for name, file in (("render", rd.PROMPTS_RENDER), ("aligned", rd.PROMPTS_ALIGNED)):
        rd.save_tensors(out / file, {k: v.cpu().numpy() for k, v in trainable_state(res.prompts[name]).items()})
    rd.save_tensors(out / rd.TEXT, {"text": res.text}, {"layout": "branch(render,aligned),state(normal,abnormal),D"})
