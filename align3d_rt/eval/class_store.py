"""Per-class results written as soon as a class is done, so an interrupted eval can ``--resume``.

Layout under the eval output folder: ``NAME_classes/<class>.json`` (the ClassResult, its failed
samples) and ``NAME_classes/<class>.examples.npz`` (the example renders for the contact sheet).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.errors import Align3DError
from align3d_rt.eval.pictures import Example
from align3d_rt.eval.report import ClassResult
from align3d_rt.io_utils import read_json, save_npz_atomic, write_json_atomic


def class_dir(out: Path, name: str) -> Path:
    return Path(out) / f"{name}_classes"


def _safe(category: str) -> str:
    return category.replace("/", "_").replace("\\", "_")


def save_class(folder: Path, result: ClassResult, examples: list[Example], identity: dict[str, Any]) -> None:
    """Write one finished class (examples first, the json last: the json marks the class done)."""
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, ex in enumerate(examples):
        arrays[f"images_{i}"] = np.asarray(ex.images, np.uint8)
        arrays[f"maps_{i}"] = np.asarray(ex.maps, np.float32)
        if ex.gt_masks is not None:
            arrays[f"gt_{i}"] = np.asarray(ex.gt_masks, np.uint8)
        meta.append({"sample_id": ex.sample_id, "category": ex.category, "is_anomalous": ex.is_anomalous,
                     "object_score": float(ex.object_score), "gt": ex.gt_masks is not None})
    save_npz_atomic(folder / f"{_safe(result.category)}.examples.npz", **arrays)
    write_json_atomic(folder / f"{_safe(result.category)}.json",
                      {"identity": identity, "result": result.to_dict(), "examples": meta})


def load_class(folder: Path, category: str, identity: dict[str, Any]) -> tuple[ClassResult, list[Example]] | None:
    """A finished class of an earlier run with the same identity, or None when it is not there."""
    path = folder / f"{_safe(category)}.json"
    if not path.is_file():
        return None
    try:
        data = read_json(path)
        if data["identity"] != identity:
            raise Align3DError(f"{path}: written by an evaluation with other settings (detector, dataset or "
                               f"protocol); --resume needs the same ones, or use --overwrite")
        r = data["result"]
        result = ClassResult(category=r["category"], n_samples=int(r["n_samples"]), n_anomalous=int(r["n_anomalous"]),
                             metrics=dict(r["metrics"]), seconds=float(r["seconds"]), failed=dict(r.get("failed", {})),
                             operating=r.get("operating"))
        examples = []
        with np.load(folder / f"{_safe(category)}.examples.npz") as z:
            for i, m in enumerate(data["examples"]):
                examples.append(Example(sample_id=m["sample_id"], category=m["category"],
                                        is_anomalous=bool(m["is_anomalous"]), object_score=float(m["object_score"]),
                                        images=z[f"images_{i}"], maps=z[f"maps_{i}"],
                                        gt_masks=z[f"gt_{i}"] if m["gt"] else None))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise Align3DError(f"{path}: unreadable class result ({type(err).__name__}); "
                           "rescore with --overwrite") from None
    return result, examples
