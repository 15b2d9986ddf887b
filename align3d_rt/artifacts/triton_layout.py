"""The Triton model repository's contract shared by its writer, its models and the client (``align3d_rt.serving``).

Layout written by ``align3d-rt export --format triton``::

    REPO/align3d_triton.json        marker: format, version, model names, bundle digest
    REPO/README.md                  how to start tritonserver on it
    REPO/<name>/config.pbtxt        the pipeline (Python backend)
    REPO/<name>/1/model.py
    REPO/<name>/1/bundle/           the bundle, copied (hash-checked when the model loads)
    REPO/<name>_encoder/config.pbtxt
    REPO/<name>_encoder/1/...       model.onnx | model.xml+model.bin | model.plan | model.py+model.onnx

Pipeline request: ``points`` (N,3) float32, optional ``dataset``/``category`` (one string each).
Response: ``point_scores`` (N,3), ``object_score`` (1,), ``global_probs`` (V,2), and only when
requested ``view_maps`` (V,2,G,G) and ``views`` (V,S,S,3) uint8. A repository exported with a
calibration also returns ``decision`` (BYTES: JSON), ``point_scores_normalized`` (N,) and
``region_labels`` (N,) int32.
"""
from __future__ import annotations

from typing import Any

MARKER_NAME = "align3d_triton.json"
MARKER_FORMAT = "align3d_rt.triton_repository"
MARKER_VERSION = 1
DEFAULT_MODEL = "align3d"
ENCODER_SUFFIX = "_encoder"
VERSION = "1"
BUNDLE_DIR = "bundle"

POINTS = "points"
DATASET = "dataset"
CATEGORY = "category"
POINT_SCORES = "point_scores"
OBJECT_SCORE = "object_score"
GLOBAL_PROBS = "global_probs"
VIEW_MAPS = "view_maps"
VIEWS = "views"
# with a calibration (export --format triton --calibration CAL; docs/runtime-spec.md 13.5)
CALIBRATION_FILE = "calibration.json"   # REPO/<name>/1/calibration.json, hash- and bundle-checked at load
DECISION = "decision"                    # BYTES (1,): the per-part decision JSON (scores.json's sample fields)
POINT_SCORES_NORMALIZED = "point_scores_normalized"   # (N,) float32
REGION_LABELS = "region_labels"          # (N,) int32: region id per point, 0 = none
DECISION_OUTPUTS = (DECISION, POINT_SCORES_NORMALIZED, REGION_LABELS)
ON_REQUEST = (VIEW_MAPS, VIEWS)  # outputs the pipeline computes only when a request names them


def encoder_name(pipeline: str) -> str:
    """The encoder model's name beside pipeline model ``pipeline``."""
    return pipeline + ENCODER_SUFFIX


def model_parameters(config: dict[str, Any]) -> dict[str, str]:
    """The string parameters of a model config (its JSON form: what Triton hands a Python model's
    ``initialize``, and what the client reads from the server)."""
    params = config.get("parameters") or {}
    return {k: str(v.get("string_value", "")) for k, v in params.items() if isinstance(v, dict)}
