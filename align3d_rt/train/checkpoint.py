"""Per-epoch checkpoints (trainable weights + flattened Adam state as safetensors, JSON sidecar).

After every finished epoch of a stage: ``checkpoints/stage<k>_epoch<e>.safetensors`` is written
atomically, then ``checkpoints/stage<k>.json`` (epoch, file name, its sha256, optimizer
param_groups, loss history) atomically, then older epoch files are removed. A crash at any point
leaves the previous consistent checkpoint in place. Never pickled.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from align3d_rt.artifacts.run_dir import CHECKPOINTS, load_tensors, save_tensors, write_losses
from align3d_rt.errors import RunDirError
from align3d_rt.io_utils import read_json, sha256_file, write_json_atomic

if TYPE_CHECKING:
    import torch

__all__ = ["Checkpoint", "trainable_state", "load_trainable", "save_checkpoint", "read_checkpoint",
           "restore_checkpoint", "read_history", "rewrite_losses"]

CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    stage: int
    epoch: int                   # number of finished epochs
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.meta.get("history", []))


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's trainable parameters by name (frozen ones, e.g. a CLIP inside, are left out)."""
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable(module: torch.nn.Module, tensors: dict[str, np.ndarray], source: str) -> None:
    """Copy arrays into the module's trainable parameters; names and shapes must match exactly."""
    import torch

    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    if set(params) != set(tensors):
        missing = sorted(set(params) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(params))[:3]
        raise RunDirError(f"{source}: weights do not fit the model (missing {missing}, unexpected {extra}); "
                          f"the run is from another model version: re-train")
    with torch.no_grad():
        for name, p in params.items():
            arr = tensors[name]
            if tuple(arr.shape) != tuple(p.shape):
                raise RunDirError(f"{source}: tensor {name} has shape {tuple(arr.shape)}, model expects "
                                  f"{tuple(p.shape)}; the run is from another model: re-train")
            p.copy_(torch.from_numpy(np.array(arr)).to(p.dtype))


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    sd = optimizer.state_dict()
    tensors: dict[str, np.ndarray] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if hasattr(val, "detach"):
                tensors[f"optim.{idx}.{key}"] = val.detach().cpu().numpy()
            else:
                tensors[f"optim.{idx}.{key}"] = np.asarray(val)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _unflatten_optimizer(tensors: dict[str, np.ndarray], groups: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    state: dict[int, dict[str, Any]] = {}
    for key, arr in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = torch.from_numpy(np.array(arr))
    fixed = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": fixed}


def save_checkpoint(run: str | Path, stage: int, epoch: int, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer, history: list[dict[str, Any]]) -> Path:
    """Write the checkpoint of ``stage`` after ``epoch`` finished epochs; return its tensor file."""
    folder = Path(run) / CHECKPOINTS
    tensors: dict[str, np.ndarray] = {}
    for prefix, module in modules.items():
        for name, t in trainable_state(module).items():
            tensors[f"model.{prefix}.{name}"] = t.cpu().numpy()
    opt_tensors, groups = _flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    file = folder / f"stage{stage}_epoch{epoch:04d}.safetensors"
    save_tensors(file, tensors)
    meta = {"format": CHECKPOINT_FORMAT, "stage": stage, "epoch": epoch, "file": file.name,
            "sha256": sha256_file(file), "param_groups": groups, "history": history}
    write_json_atomic(folder / f"stage{stage}.json", meta)
    for old in folder.glob(f"stage{stage}_epoch*.safetensors"):
        if old.name != file.name:
            old.unlink(missing_ok=True)
    return file


def read_checkpoint(run: str | Path, stage: int) -> Checkpoint | None:
    """The last finished-epoch checkpoint of ``stage``, or None; corrupt ones raise RunDirError."""
    folder = Path(run) / CHECKPOINTS
    meta_path = folder / f"stage{stage}.json"
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
        file = folder / meta["file"]
        epoch = int(meta["epoch"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise RunDirError(f"{meta_path}: corrupt checkpoint record; delete {folder} to restart the stage") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunDirError(f"{meta_path}: checkpoint format {meta.get('format')} is not supported; delete {folder}")
    if not file.is_file() or sha256_file(file) != meta.get("sha256"):
        raise RunDirError(f"{file}: checkpoint missing or corrupt (hash mismatch); "
                          f"delete {folder} to restart the stage")
    return Checkpoint(stage=stage, epoch=epoch, tensors=load_tensors(file, "checkpoint"), meta=meta)


def restore_checkpoint(ckpt: Checkpoint, modules: dict[str, torch.nn.Module],
                       optimizer: torch.optim.Optimizer) -> None:
    """Load weights and optimizer state saved by ``save_checkpoint`` into fresh modules/optimizer."""
    source = f"checkpoint stage {ckpt.stage} epoch {ckpt.epoch}"
    for prefix, module in modules.items():
        head = f"model.{prefix}."
        load_trainable(module, {k[len(head):]: v for k, v in ckpt.tensors.items() if k.startswith(head)}, source)
    try:
        optimizer.load_state_dict(_unflatten_optimizer(ckpt.tensors, ckpt.meta["param_groups"]))
    except (KeyError, ValueError) as err:
        raise RunDirError(f"{source}: optimizer state does not fit ({err}); delete the checkpoints folder") from None


def read_history(run: str | Path, stage: int) -> list[dict[str, Any]]:
    """Loss history recorded in the stage's checkpoint JSON ([] when none or unreadable)."""
    path = Path(run) / CHECKPOINTS / f"stage{stage}.json"
    try:
        return list(read_json(path).get("history", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def rewrite_losses(run: str | Path) -> None:
    """losses.jsonl = stage-1 history then stage-2 history, from the checkpoint records (atomic)."""
    write_losses(run, read_history(run, 1) + read_history(run, 2))
