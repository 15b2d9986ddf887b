"""The Triton pipeline model: a point cloud in, per-point and object scores out, inside Triton's Python backend.

``PipelineModel`` is what the repository's ``model.py`` (written by ``export --format triton``)
delegates to. It scores with the same :class:`~align3d_rt.runtime.detector.Detector` local
inference uses; only its runner differs: :class:`BlsRunner` sends the rendered views to the encoder
model through Triton's BLS API (``pb_utils.InferenceRequest``), so the encoder's dynamic batcher
can merge the views of concurrent requests. ``pb_utils`` is passed in (it exists only inside the
Triton stub), which also lets the tests drive this class without a server.

Request: ``points`` (N,3) float32; optional ``dataset`` and ``category`` (BYTES, one element each:
render point size/normals as for local inference). Response: ``point_scores`` (N,3) float32
(render, aligned, fused), ``object_score`` (1,) float32, ``global_probs`` (V,2) float32, and only
when requested ``view_maps`` (V,2,G,G) float32 and ``views`` (V,S,S,3) uint8 (for the picture).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import INPUT_NAME, OUTPUT_NAMES, Bundle, load_bundle
from align3d_rt.artifacts.triton_layout import (
    CATEGORY,
    DATASET,
    DECISION,
    GLOBAL_PROBS,
    OBJECT_SCORE,
    POINT_SCORES,
    POINT_SCORES_NORMALIZED,
    POINTS,
    REGION_LABELS,
    VIEW_MAPS,
    VIEWS,
    model_parameters,
)
from align3d_rt.data.sample import PointCloudSample
from align3d_rt.errors import Align3DError, InputError
from align3d_rt.runtime.base import BaseRunner, EncoderOutput
from align3d_rt.runtime.detector import Detector


class EncoderCallError(Align3DError):
    """The encoder model answered a BLS request with an error."""


class BlsRunner(BaseRunner):
    """Encoder runner whose inference is a BLS call to the repository's encoder model."""

    name = "triton-bls"

    def __init__(self, pb_utils: Any, encoder_model: str, grid_size: int, max_batch: int | None = None,
                 timeout_us: int = 0) -> None:
        super().__init__(max_batch=max_batch, device="cpu")
        self.pb = pb_utils
        self.encoder_model = encoder_model
        self._grid = int(grid_size)
        self.timeout_us = int(timeout_us)

    @property
    def grid_size(self) -> int:
        return self._grid

    def _infer_impl(self, views: Any) -> EncoderOutput:
        request = self.pb.InferenceRequest(
            model_name=self.encoder_model, requested_output_names=list(OUTPUT_NAMES),
            inputs=[self.pb.Tensor(INPUT_NAME, np.ascontiguousarray(views, dtype=np.uint8))],
            timeout=self.timeout_us)
        response = request.exec()
        if response.has_error():
            raise EncoderCallError(f"encoder model '{self.encoder_model}': {response.error().message()}")
        maps, probs = (self.pb.get_output_tensor_by_name(response, n).as_numpy() for n in OUTPUT_NAMES)
        return EncoderOutput(np.asarray(maps, np.float32), np.asarray(probs, np.float32))


class _ZeroRunner(BaseRunner):
    """Zero maps: lets ``initialize`` compile the render/back-projection kernels without the encoder."""

    name = "warm-up"

    def __init__(self, grid_size: int) -> None:
        super().__init__()
        self._grid = grid_size

    @property
    def grid_size(self) -> int:
        return self._grid

    def _infer_impl(self, views: Any) -> EncoderOutput:
        n = int(views.shape[0])
        return EncoderOutput(np.zeros((n, 2, self._grid, self._grid), np.float32), np.zeros((n, 2), np.float32))


def warm_up(bundle: Bundle) -> None:
    """Score a small sphere with zero maps: numba compiles (or loads from its cache) every kernel once."""
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((512, 3)).astype(np.float32)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    detector = Detector(lambda: _ZeroRunner(bundle.grid_size), bundle.render_settings, bundle.fusion_weight, "warm-up")
    with detector:
        detector.score([PointCloudSample(points=pts, source="warm-up")], keep_render=False)


class PipelineModel:
    """The work of the pipeline model's ``TritonPythonModel`` (initialize/execute/finalize)."""

    def __init__(self, args: dict[str, Any], pb_utils: Any) -> None:
        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.params = model_parameters(config)
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.bundle = load_bundle(version_dir / self.params["bundle_dir"])  # hash-checked, as always
        self.calibration: Any = None
        if self.params.get("calibration_file"):  # hash-checked; refused when it is for another bundle
            from align3d_rt.artifacts.calibration import bundle_source, check_source, load_calibration

            cal_path = version_dir / self.params["calibration_file"]
            self.calibration = load_calibration(cal_path)
            check_source(self.calibration, bundle_source(self.bundle.manifest), cal_path)
        warm_up(self.bundle)
        max_batch = int(self.params.get("encoder_max_batch", "0")) or None
        runner = BlsRunner(pb_utils, self.params["encoder_model"], self.bundle.grid_size, max_batch,
                           int(self.params.get("encoder_timeout_us", "0")))
        info = {"source": "triton", "backend": runner.name, "bundle_hash": self.bundle.onnx_sha256,
                "precision": self.bundle.precision}
        self.detector = Detector(lambda: runner, self.bundle.render_settings, self.bundle.fusion_weight,
                                 runner.name, info, view_chunk=max_batch)
        self.detector.__enter__()

    def close(self) -> None:
        self.detector.close()

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._answer(r) for r in requests]

    def _answer(self, request: Any) -> Any:
        pb = self.pb
        try:
            sample = self._sample(request)
            wanted = set(request.requested_output_names() or ())
            result = self.detector.score([sample], keep_render=VIEWS in wanted)[0]
            decision = None
            if self.calibration is not None:
                from align3d_rt.runtime.decisions import decide

                decision = decide(sample.points, result.fused, result.object_score, self.calibration)
        except (Align3DError, ValueError) as err:
            code = getattr(pb.TritonError, "INVALID_ARG", None) if isinstance(err, InputError) else None
            error = pb.TritonError(str(err)) if code is None else pb.TritonError(str(err), code)
            return pb.InferenceResponse(output_tensors=[], error=error)
        outputs = [pb.Tensor(POINT_SCORES, np.ascontiguousarray(result.point_scores, np.float32)),
                   pb.Tensor(OBJECT_SCORE, np.asarray([result.object_score], np.float32)),
                   pb.Tensor(GLOBAL_PROBS, np.ascontiguousarray(result.global_probs, np.float32))]
        if VIEW_MAPS in wanted:
            outputs.append(pb.Tensor(VIEW_MAPS, np.ascontiguousarray(result.view_maps, np.float32)))
        if VIEWS in wanted and result.render is not None:
            outputs.append(pb.Tensor(VIEWS, np.ascontiguousarray(result.render.images, np.uint8)))
        if decision is not None:  # §13.5: the same per-part object as scores.json's sample fields
            text = json.dumps(decision.to_json(), sort_keys=True).encode("utf-8")
            outputs += [pb.Tensor(DECISION, np.array([text], dtype=np.object_)),
                        pb.Tensor(POINT_SCORES_NORMALIZED, np.ascontiguousarray(decision.normalized, np.float32)),
                        pb.Tensor(REGION_LABELS, np.ascontiguousarray(decision.regions.labels, np.int32))]
        return pb.InferenceResponse(output_tensors=outputs)

    def _sample(self, request: Any) -> PointCloudSample:
        """The request's cloud; an InputError (the client's fault) for what cannot be scored."""
        tensor = self.pb.get_input_tensor_by_name(request, POINTS)
        if tensor is None:
            raise InputError(f"request lacks the '{POINTS}' input")
        points = tensor.as_numpy()
        if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
            raise InputError(f"'{POINTS}' must be (N,3) with N >= 1; got shape {tuple(points.shape)}")
        if not np.isfinite(points).all():
            raise InputError(f"'{POINTS}' holds NaN or infinite coordinates")
        return PointCloudSample(points=np.ascontiguousarray(points, np.float32), source="request",
                                dataset=self._text(request, DATASET), category=self._text(request, CATEGORY))

    def _text(self, request: Any, name: str) -> str:
        tensor = self.pb.get_input_tensor_by_name(request, name)
        if tensor is None:
            return ""
        values = tensor.as_numpy().reshape(-1)
        if values.size != 1:
            raise InputError(f"'{name}' must hold one string; got {values.size}")
        value = values[0]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
