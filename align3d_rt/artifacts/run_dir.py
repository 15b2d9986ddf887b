"""Training run directory: layout, config, atomic safetensors I/O and the torch-free ``load_run``.

Layout::

    config.json                  format, versions, dataset/category, CLIP, render + training settings
    aligner.safetensors          stage-1 result (Aligner state dict)
    prompts_render.safetensors   stage-2 prompt learner of the rendering branch (trainable tensors)
    prompts_aligned.safetensors  stage-2 prompt learner of the RGB-aligned branch
    text_embeddings.safetensors  'text' float32 (2,2,D) [branch, state, D]
    losses.jsonl                 one line per finished epoch
    checkpoints/                 stage<k>.json + stage<k>_epoch<e>.safetensors (for --resume)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts.migrate import ALIGNER_CHANGE, Upgrade, upgrade
from align3d_rt.errors import RunDirError
from align3d_rt.io_utils import atomic_path, read_json, write_json_atomic, write_text_atomic
from align3d_rt.render.views import RenderSettings

__all__ = [
    "RUN_FORMAT", "RUN_FORMAT_VERSION", "CONFIG", "ALIGNER", "PROMPTS_RENDER", "PROMPTS_ALIGNED", "TEXT",
    "LOSSES", "CHECKPOINTS", "RunArtifacts", "load_run", "read_config", "write_config",
    "save_tensors", "load_tensors", "check_finite", "write_losses", "clip_seed", "with_clip_weights",
]

RUN_FORMAT = "align3d_rt.run"
RUN_FORMAT_VERSION = 2
CONFIG = "config.json"
ALIGNER = "aligner.safetensors"
PROMPTS_RENDER = "prompts_render.safetensors"
PROMPTS_ALIGNED = "prompts_aligned.safetensors"
TEXT = "text_embeddings.safetensors"
LOSSES = "losses.jsonl"
CHECKPOINTS = "checkpoints"
FINAL_FILES = (ALIGNER, PROMPTS_RENDER, PROMPTS_ALIGNED, TEXT)
# One step per older run format version (v -> v+1); none: version 1 cannot be upgraded (OBSOLETE).
UPGRADES: dict[int, Upgrade] = {}
OBSOLETE: dict[int, str] = {1: ALIGNER_CHANGE}


@dataclass
class RunArtifacts:
    """What inference needs from a finished run (numpy only)."""

    path: Path
    config: dict
    clip_name: str
    clip_weights: str | None
    clip_weights_id: str
    render_settings: RenderSettings
    aligner_state: dict[str, np.ndarray]
    text: np.ndarray          # (2,2,D) float32 [branch, state, D]
    fusion_weight: float

    @property
    def clip_seed(self) -> int:
        """Seed of the CLIP tower's random init (matters only for random weights); see ``clip_seed``."""
        return clip_seed(self.clip_weights_id, self.config)


def clip_seed(weights_id: str | None, config: dict[str, Any]) -> int:
    """The CLIP init seed of a run: 'random:SEED' in the weights id, else ``clip.init_seed``, else
    ``seeds.clip_init`` / ``seeds.clip``, else ``seed``, else 0. The one rule used by training's
    readers, the runtime and the exporter."""
    if weights_id and weights_id.startswith("random:"):
        try:
            return int(weights_id.split(":", 1)[1])
        except ValueError:
            pass
    clip = config.get("clip")
    if isinstance(clip, dict) and isinstance(clip.get("init_seed"), int):
        return int(clip["init_seed"])
    seeds = config.get("seeds")
    if isinstance(seeds, dict):
        for key in ("clip_init", "clip"):
            if isinstance(seeds.get(key), int):
                return int(seeds[key])
    seed = config.get("seed", 0)
    return int(seed) if isinstance(seed, int) else 0


def save_tensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write numpy arrays as safetensors atomically."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(arrays, str(tmp), metadata=metadata)
        except SafetensorError as err:  # its I/O errors (e.g. disk full) are not OSErrors: make them one
            raise _as_os_error(err) from None


def _as_os_error(err: Exception) -> OSError:
    """An OSError for a safetensors I/O failure ("... (os error 28)"), keeping the errno when it is given."""
    import errno as errno_mod
    import re

    found = re.search(r"os error (\d+)", str(err))
    code = int(found.group(1)) if found else errno_mod.EIO
    return OSError(code, os.strerror(code))


def load_tensors(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Read a safetensors file to numpy; a missing or corrupt file is a one-line RunDirError."""
    from safetensors.numpy import load_file

    p = Path(path)
    if not p.is_file():
        raise RunDirError(f"{p}: missing {what}")
    try:
        return load_file(str(p))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for truncated/garbled headers
        raise RunDirError(f"{p}: corrupt safetensors {what} ({type(err).__name__}); re-run training or "
                          f"restore the file") from None


def check_finite(path: str | Path, tensors: dict[str, np.ndarray],
                 advice: str = "re-run training or re-import the checkpoint") -> dict[str, np.ndarray]:
    """``tensors`` unchanged, or a one-line RunDirError naming the first tensor holding NaN/Inf."""
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise RunDirError(f"{path}: tensor '{name}' holds {bad} non-finite value(s) (NaN/Inf); weights like "
                              f"these score nothing: {advice}")
    return tensors


def write_config(run: str | Path, config: dict) -> None:
    write_json_atomic(Path(run) / CONFIG, config)


def read_config(run: str | Path) -> dict:
    """Read and check config.json (format name and version)."""
    path = Path(run) / CONFIG
    if not path.is_file():
        raise RunDirError(f"{run}: not a training run directory (no {CONFIG}); train one with `align3d-rt train`")
    try:
        config = read_json(path)
    except (OSError, ValueError) as err:
        raise RunDirError(f"{path}: unreadable config ({err.__class__.__name__}: {err}); re-run training") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise RunDirError(f"{path}: not an align3d_rt run config (format "
                          f"{config.get('format') if isinstance(config, dict) else None!r})")
    return upgrade(config, RUN_FORMAT_VERSION, UPGRADES, lambda problem: RunDirError(f"{path}: {problem}"),
                   "run", "re-train with this version", obsolete=OBSOLETE)


def write_losses(run: str | Path, records: list[dict[str, Any]]) -> None:
    """Rewrite losses.jsonl atomically from the full history (one line per finished epoch)."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    write_text_atomic(Path(run) / LOSSES, text)


def load_run(path: str | os.PathLike[str]) -> RunArtifacts:
    """Load a finished run (torch-free). Incomplete, foreign or corrupt runs raise RunDirError."""
    run = Path(path)
    if not run.is_dir():
        raise RunDirError(f"{run}: run directory not found")
    config = read_config(run)
    missing = [f for f in FINAL_FILES if not (run / f).is_file()]
    if missing:
        raise RunDirError(f"{run}: incomplete run (missing {', '.join(missing)}); finish it with "
                          f"`align3d-rt train ... --out {run} --resume`")
    aligner_state = check_finite(run / ALIGNER, load_tensors(run / ALIGNER, "aligner weights"))
    text_file = check_finite(run / TEXT, load_tensors(run / TEXT, "text embeddings"))
    for f in (PROMPTS_RENDER, PROMPTS_ALIGNED):
        check_finite(run / f, load_tensors(run / f, "prompt weights"))  # integrity check only
    text = text_file.get("text")
    if text is None or text.ndim != 3 or text.shape[:2] != (2, 2):
        raise RunDirError(f"{run / TEXT}: tensor 'text' must be (2,2,D), got "
                          f"{None if text is None else tuple(text.shape)}")
    try:
        clip = config["clip"]
        render_settings = RenderSettings.from_dict(config["render_settings"])
        fusion_weight = float(config["fusion_weight"])
        if not 0.0 <= fusion_weight <= 1.0:  # NaN fails too
            raise ValueError(f"fusion_weight {fusion_weight} outside [0, 1]")
        return RunArtifacts(path=run, config=config, clip_name=str(clip["name"]), clip_weights=clip.get("weights"),
                            clip_weights_id=str(clip["weights_id"]), render_settings=render_settings,
                            aligner_state=aligner_state, text=np.asarray(text, dtype=np.float32),
                            fusion_weight=fusion_weight)
    except (KeyError, TypeError, ValueError) as err:
        raise RunDirError(f"{run / CONFIG}: config lacks or garbles {err}; re-run training") from None


def with_clip_weights(run: RunArtifacts, clip_weights: str | os.PathLike[str] | None) -> RunArtifacts:
    """The run with its CLIP weights looked for at ``clip_weights`` (absolute) instead of the recorded path;
    the identity check (tensor hash) happens when the weights are loaded (``model.graph``)."""
    if clip_weights is None:
        return run
    import dataclasses

    return dataclasses.replace(run, clip_weights=str(Path(clip_weights).expanduser().resolve()))
