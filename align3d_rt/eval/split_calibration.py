"""``eval --calibrate-on SPLIT``: per test class, a calibration fitted on that class's good parts of
another split (train or validation) with the default rule (§13.1, conformal), before its test split
is scored. The test parts never take part in the fit, so the measured false-reject rate on the
test split's good parts is an honest check of the rule's bound."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.errors import Align3DError

CALIBRATION_SPLITS = ("train", "validation")


def fit_on_split(detector: Any, dataset: str, root: str | Path, category: str, split: str,
                 target_false_reject: float | None = None, batch_size: int = 2, progress: bool = True) -> Any:
    """Score the good parts of ``category``/``split`` and fit a Calibration with the default rule."""
    from align3d_rt.artifacts.calibration import scoring_name
    from align3d_rt.data.readers import list_samples
    from align3d_rt.eval.calibration import fit_calibration

    if split not in CALIBRATION_SPLITS:
        raise Align3DError(f"--calibrate-on {split!r}: choose one of {', '.join(CALIBRATION_SPLITS)}")
    refs = list_samples(dataset, root, category, split)
    objects: list[float] = []
    points: list[np.ndarray] = []
    for _ref, res in detector.score_stream(refs, load=lambda r: r.load(), batch_size=batch_size):
        if isinstance(res, Exception):
            if progress:
                print(f"align3d-rt eval: calibration part left out: {res}", file=sys.stderr)
            continue
        if res.sample.is_anomalous:
            continue
        objects.append(float(res.object_score))
        points.append(np.asarray(res.fused, dtype=np.float32))
    if not objects:
        raise Align3DError(f"{Path(root) / category / split}: no good parts to calibrate on")
    options: dict[str, Any] = {} if target_false_reject is None else {"target_false_reject": float(target_false_reject)}
    try:
        return fit_calibration(objects, points, product=category, source=detector.calibration_source(),
                               scoring=scoring_name(detector.reference_scoring), dataset=dataset, category=category,
                               **options)
    except Align3DError as err:  # e.g. too few good parts for the rule: say which split
        raise Align3DError(f"{Path(root) / category / split}: {err}") from None
