"""Score clouds on a Triton Inference Server: the client side of ``align3d-rt infer --triton URL``.

``TritonScorer`` is a :class:`~align3d_rt.runtime.scorer.Scorer` like the local Detector (same
``score_stream``, ``describe`` and ``fusion_weight``), not a Detector: files are read and
preprocessed here exactly as for local inference, the scored points are sent to the pipeline model
(``artifacts/triton_layout.py``) and the answer becomes the same ScoreResult, so the command writes
the same outputs.

Protocol from the URL: ``http://host:port`` (tritonclient.http) or ``grpc://host:port``
(tritonclient.grpc). Every call has a timeout; connection failures and timeouts are retried a
bounded number of times with backoff, then end the run with one line ``URL: problem``. A cloud the
model rejects is that file's failure (the others go on).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from align3d_rt.artifacts import triton_layout as layout
from align3d_rt.data.sample import PointCloudSample
from align3d_rt.errors import Align3DError, InputError, import_backend, input_error
from align3d_rt.runtime.detector import KeepRender, ScoreResult

SCHEMES = ("http", "grpc")
# gRPC status codes that mean "the server did not answer" (retried), not "the server refused this request".
_TRANSPORT_GRPC = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
_CLIENT_HINT = "pip install 'tritonclient[grpc,http]' (requirements.txt pins it)"


class RemoteDecision:
    """A calibrated pipeline's per-part decision, shaped like ``runtime.decisions.PartDecision`` where the
    infer command reads it: ``to_json()`` (§13.5 sample fields), ``normalized`` (N,) f32 and
    ``regions.labels`` (N,) i4."""

    def __init__(self, fields: dict[str, Any], normalized: np.ndarray, labels: np.ndarray) -> None:
        self.fields = fields
        self.decision = str(fields.get("decision"))
        self.normalized = normalized
        self.regions = SimpleNamespace(labels=labels, regions=list(fields.get("regions", [])))

    def to_json(self) -> dict[str, Any]:
        return dict(self.fields)


class ServerUnavailable(Align3DError):
    """The server cannot be reached or does not serve the model (nothing can be scored)."""


def parse_url(url: str) -> tuple[str, str]:
    """``http://host:port`` or ``grpc://host:port`` -> (scheme, 'host:port')."""
    bad = Align3DError(f"{url}: expected http://HOST:PORT or grpc://HOST:PORT (Triton's defaults: 8000, 8001)")
    if not url.isprintable() or any(ch.isspace() for ch in url):
        raise bad
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise bad from None
    if (parts.scheme not in SCHEMES or not parts.hostname or port is None or not 0 < port < 65536
            or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password):
        raise bad
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, f"{host}:{port}"


def _one_line(err: BaseException) -> str:
    msg = getattr(err, "message", None)
    text = (msg() if callable(msg) else None) or str(err) or type(err).__name__
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


class TritonScorer:
    """A Triton pipeline model behind the Scorer interface the infer command uses."""

    def __init__(self, url: str, model: str = layout.DEFAULT_MODEL, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5) -> None:
        if timeout <= 0 or retries < 0:
            raise Align3DError(f"{url}: need a timeout > 0 and retries >= 0")
        self.url, self.model = url, model
        self.scheme, self.address = parse_url(url)
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.params: dict[str, str] = {}
        self.server_version = ""
        self.requests = 0
        self._client: Any = None
        self._lib: Any = None

    # ---- connection ---------------------------------------------------------------------------
    def __enter__(self) -> TritonScorer:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def connect(self) -> None:
        """Reach the server, check the model is ready and is an align3d-rt pipeline, read its parameters."""
        if self._client is not None:
            return
        utils = import_backend("tritonclient.utils", "tritonclient", _CLIENT_HINT)
        try:
            self._connect()
        except utils.InferenceServerException as err:  # an answer that refuses: one line, nothing scored
            self.close()
            raise ServerUnavailable(f"{self.url}: {_one_line(err)}") from None
        except ServerUnavailable:
            self.close()
            raise

    def _connect(self) -> None:
        self._lib = import_backend(f"tritonclient.{self.scheme}", "tritonclient", _CLIENT_HINT)
        if self.scheme == "http":
            self._client = self._lib.InferenceServerClient(self.address, connection_timeout=self.timeout,
                                                           network_timeout=self.timeout)
        else:
            self._client = self._lib.InferenceServerClient(self.address)
        if not self._call("is_server_live"):
            raise ServerUnavailable(f"{self.url}: the server answers but is not live")
        self.server_version = str(self._json(self._call("get_server_metadata")).get("version", ""))
        if not self._ready():
            raise ServerUnavailable(f"{self.url}: {self._why_not_ready()}")
        config = self._json(self._call("get_model_config", self.model))
        config = config.get("config", config)  # gRPC wraps the config
        inputs = {i.get("name") for i in config.get("input", [])}
        params = layout.model_parameters(config)
        if layout.POINTS not in inputs or "bundle_manifest_sha256" not in params:
            raise ServerUnavailable(f"{self.url}: model '{self.model}' is not an align3d-rt pipeline model "
                                    f"(export one with: align3d-rt export --format triton)")
        self.params = params

    def _ready(self) -> bool:
        utils = import_backend("tritonclient.utils", "tritonclient", _CLIENT_HINT)
        try:
            return bool(self._call("is_model_ready", self.model))
        except utils.InferenceServerException:  # gRPC answers an unknown model with an error
            return False

    def _why_not_ready(self) -> str:
        index = self._json(self._call("get_model_repository_index"))
        models = index.get("models", index) if isinstance(index, dict) else index
        entries = {m.get("name"): m for m in models or []}
        if self.model not in entries:
            names = ", ".join(sorted(n for n in entries if n)) or "none"
            return f"no model '{self.model}' on the server (models: {names})"
        entry = entries[self.model]
        state = entry.get("state") or "UNKNOWN"
        lines = str(entry.get("reason") or "").strip().splitlines()  # the Python stub appends a traceback
        reason = lines[0] if lines else ""
        return f"model '{self.model}' is not ready (state {state}{': ' + reason if reason else ''})"

    @staticmethod
    def _json(answer: Any) -> Any:
        if isinstance(answer, (dict, list)):
            return answer
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(answer, preserving_proto_field_name=True)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One client call with the timeout; transport failures retried, then ServerUnavailable."""
        if self.scheme == "grpc":
            kwargs["client_timeout"] = self.timeout
        if self.scheme == "grpc" and method.startswith("get_"):
            kwargs["as_json"] = True
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except Exception as err:  # sorted into transport failures (handled below) and refusals (re-raised)
                if not self._is_transport(err):
                    raise
                last = err
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise ServerUnavailable(f"{self.url}: no answer from the server after {self.retries + 1} tries with a "
                                f"{self.timeout:g}s timeout ({_one_line(last) if last else 'no answer'})")

    def _is_transport(self, err: BaseException) -> bool:
        """True for 'no answer' (refused, reset, timed out), False for an answer that refuses the request."""
        utils = import_backend("tritonclient.utils", "tritonclient", _CLIENT_HINT)
        if isinstance(err, utils.InferenceServerException):
            status = str(err.status() or "")
            return status in _TRANSPORT_GRPC or (self.scheme == "http" and not status)
        # refused, reset, timed out (socket.timeout is an OSError); anything else is a bug, not the network
        return isinstance(err, OSError) or type(err).__module__.split(".")[0] in ("gevent", "geventhttpclient")

    # ---- the Scorer interface -----------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        """The served repository carries a calibration (export --format triton --calibration)."""
        return bool(self.params.get("calibration_file"))

    @property
    def calibration_summary(self) -> dict[str, Any] | None:
        """scores.json's top-level ``calibration`` (§13.5) for the served calibration, or None."""
        if not self.calibrated:
            return None
        import json

        p = self.params
        return {"product": p.get("calibration_product", ""), "calibration_sha256": p.get("calibration_sha256", ""),
                "rule": json.loads(p.get("calibration_rule") or "{}"),
                "object_threshold": float(p.get("object_threshold", "nan")),
                "point_threshold": float(p.get("point_threshold", "nan")),
                "file": f"{self.url}/{self.model}/{p['calibration_file']}"}

    @property
    def fusion_weight(self) -> float:
        return float(self.params.get("fusion_weight", "0.5"))

    def describe(self) -> dict[str, Any]:
        """What scored the samples (for scores.json): the server, the model and its bundle."""
        return {"source": "triton", "url": self.url, "protocol": self.scheme, "model": self.model,
                "server_version": self.server_version, "fusion_weight": self.fusion_weight,
                "scoring": {"mode": "ours"},
                **{k: self.params[k] for k in ("bundle_manifest_sha256", "precision", "clip_name", "encoder_kind",
                                               "views", "image_size", "grid_size") if k in self.params}}

    def score_stream(self, items: Iterable[Any], load: Callable[[Any], PointCloudSample] | None = None,
                     batch_size: int = 1, keep_render: KeepRender = False
                     ) -> Iterator[tuple[Any, ScoreResult | InputError]]:
        """(item, ScoreResult or InputError) per item, in order; one request per cloud.

        ``batch_size`` is not used: the server batches the encoder work of concurrent requests."""
        self.connect()
        for item in items:
            t0 = time.perf_counter()
            try:
                sample = load(item) if load is not None else item
            except InputError as err:
                yield item, err
                continue
            t1 = time.perf_counter()
            keep = bool(keep_render(sample)) if callable(keep_render) else bool(keep_render)
            yield item, self.score_sample(sample, keep, load_seconds=t1 - t0)

    def score_sample(self, sample: PointCloudSample, keep_render: bool = False,
                     load_seconds: float = 0.0) -> ScoreResult | InputError:
        """Send one cloud; the server's refusal comes back as the sample's InputError."""
        lib = self._lib
        points = np.ascontiguousarray(sample.points, dtype=np.float32)
        inputs = [lib.InferInput(layout.POINTS, list(points.shape), "FP32")]
        inputs[0].set_data_from_numpy(points)
        for name, text in ((layout.DATASET, sample.dataset), (layout.CATEGORY, sample.category)):
            if text:
                tensor = lib.InferInput(name, [1], "BYTES")
                tensor.set_data_from_numpy(np.array([text.encode("utf-8")], dtype=np.object_))
                inputs.append(tensor)
        names = [layout.POINT_SCORES, layout.OBJECT_SCORE, layout.GLOBAL_PROBS]
        names += list(layout.ON_REQUEST) if keep_render else []
        names += list(layout.DECISION_OUTPUTS) if self.calibrated else []
        outputs = [lib.InferRequestedOutput(n) for n in names]
        t0 = time.perf_counter()
        utils = import_backend("tritonclient.utils", "tritonclient", _CLIENT_HINT)
        try:
            answer = self._call("infer", self.model, inputs, outputs=outputs)
        except utils.InferenceServerException as err:
            return input_error(sample.source or sample.sample_id, f"the server refused the cloud ({_one_line(err)})")
        seconds = time.perf_counter() - t0
        self.requests += 1
        scores = np.asarray(answer.as_numpy(layout.POINT_SCORES), dtype=np.float32)
        if scores.shape != (sample.num_points, 3):
            return input_error(sample.source or sample.sample_id,
                               f"the server answered {scores.shape} scores for {sample.num_points} points")
        views = answer.as_numpy(layout.VIEWS) if keep_render else None
        decision = self._decision(answer, sample) if self.calibrated else None
        if isinstance(decision, InputError):
            return decision
        return ScoreResult(
            sample_id=sample.sample_id, point_scores=scores,
            object_score=float(np.asarray(answer.as_numpy(layout.OBJECT_SCORE)).reshape(-1)[0]),
            global_probs=np.asarray(answer.as_numpy(layout.GLOBAL_PROBS), dtype=np.float32),
            maps=answer.as_numpy(layout.VIEW_MAPS) if keep_render else None,
            render=SimpleNamespace(images=views) if views is not None else None,
            timings={"load": load_seconds, "request": seconds}, sample=sample, decision=decision)

    @staticmethod
    def _decision(answer: Any, sample: PointCloudSample) -> RemoteDecision | InputError:
        """The decision outputs of a calibrated pipeline, checked against the cloud's size."""
        import json

        raw = np.asarray(answer.as_numpy(layout.DECISION)).reshape(-1)[0]
        fields = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        normalized = np.asarray(answer.as_numpy(layout.POINT_SCORES_NORMALIZED), dtype=np.float32).reshape(-1)
        labels = np.asarray(answer.as_numpy(layout.REGION_LABELS), dtype=np.int32).reshape(-1)
        if normalized.shape[0] != sample.num_points or labels.shape[0] != sample.num_points:
            return input_error(sample.source or sample.sample_id, f"the server answered decision outputs for "
                               f"{normalized.shape[0]}/{labels.shape[0]} points, not {sample.num_points}")
        return RemoteDecision(fields, normalized, labels)
