"""The Detector: point clouds in, per-point and object scores out, over any registered backend.

Three stages per batch of clouds, the same for every backend:
  prepare  load (optional) + render every cloud's views            (numba kernels, GIL released)
  encode   one runner.infer over all views of the batch             (the backend)
  finish   back-project, fuse, object score (``align3d_rt.scoring``)
``score`` runs them one after the other for one batch. ``score_stream`` overlaps them over many
batches on three threads joined by bounded queues (memory stays flat): while the encoder runs batch
k, batch k+1 is loaded and rendered and batch k-1 is back-projected, scored and handed to the
caller (who writes it).

Device 'cuda': the splat renderer's CUDA kernels render into device buffers, the runner takes them
as device arrays and leaves its maps on the device (``copy_outputs_to_host=False``), and the CUDA
back-projection kernel reads them on the runner's stream. Only the per-point scores and the (V,2)
global probabilities come back to the host; view maps and images are copied only when asked for
(``ScoreResult.view_maps``, ``ScoreResult.render``). No heavy import at module level: the
onnxruntime path runs with torch unimportable.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt import scoring
from align3d_rt.data.sample import PointCloudSample
from align3d_rt.errors import Align3DError, InputError, input_error
from align3d_rt.render.views import RenderSettings
from align3d_rt.runtime import arrays, registry
from align3d_rt.runtime.base import VIEW_CHUNK, BaseRunner, EncoderOutput
from align3d_rt.runtime.detector_info import ORIGIN_KEYS, DetectorInfo
from align3d_rt.runtime.devices import resolve_device
from align3d_rt.vocabulary import Precision, Source

# numba's default CPU threading layer ('workqueue' where neither TBB nor OpenMP is present) must not
# run two parallel kernels at once: render and back-projection of different batches take turns.
_CPU_KERNELS = threading.Lock()


@dataclass
class ScoreResult:
    """The scores of one sample.

    point_scores (N,3) float32: channels (render, aligned, fused), one row per sample point.
    global_probs (V,2) float32: per-view global abnormal probabilities per branch.
    view_maps (V,2,G,G) float32: per-view patch abnormal probabilities (branch 0 render, 1 aligned),
    copied from the device on first access.
    render: the RenderResult (images, pixels, visible) or None when not kept.
    sample: the scored PointCloudSample (after loading/preprocessing: row i of point_scores is its point i).
    timings: seconds per stage (load, render, encode, backproject); encode/backproject are the batch's
    time divided by the batch size.
    """

    sample_id: str
    point_scores: np.ndarray
    object_score: float
    global_probs: np.ndarray
    maps: Any = None
    render: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    sample: PointCloudSample | None = None
    # scoring_reference.ReferenceScores in reference mode (object score and fused channel from it)
    reference: Any = None
    decision: Any = None  # runtime.decisions.PartDecision when the detector has a calibration (spec 13)

    @property
    def view_maps(self) -> np.ndarray | None:
        if self.maps is not None and not isinstance(self.maps, np.ndarray):
            self.maps = np.asarray(arrays.to_host(self.maps), dtype=np.float32)
        return self.maps

    @property
    def fused(self) -> np.ndarray:
        """(N,) fused point scores."""
        return self.point_scores[:, 2]


@dataclass
class _Batch:
    """One batch moving through the stages; ``errors[i]`` is set for an item that failed to load/render."""

    items: list[Any]
    samples: list[PointCloudSample | None]
    renders: list[Any]
    errors: list[InputError | None]
    load_times: list[float]
    render_times: list[float]
    encoded: EncoderOutput | None = None
    encode_time: float = 0.0

    @property
    def ok(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is None]


class _Failed:
    """A stage's unexpected exception, passed downstream to re-raise in the caller's thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()
KeepRender = bool | Callable[[PointCloudSample], bool]


def _keeps(keep_render: KeepRender, sample: PointCloudSample) -> bool:
    return bool(keep_render(sample)) if callable(keep_render) else bool(keep_render)


class Detector:
    """Point-cloud anomaly detector: a context manager that activates its encoder runner once.

    Build with :meth:`from_run` (torch reference) or :meth:`from_bundle` (exported graph); the
    backend comes from the registry. The runner is created lazily, on first use or ``__enter__``.
    """

    def __init__(
        self,
        runner_factory: Callable[[], BaseRunner],
        render_settings: RenderSettings,
        fusion_weight: float,
        backend_name: str,
        info: DetectorInfo | dict[str, Any] | None = None,
        view_chunk: int | None = VIEW_CHUNK,
        device: str = "cpu",
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda' (resolve 'auto' first), got {device!r}")
        self._factory = runner_factory
        self.render_settings = render_settings
        self.fusion_weight = float(fusion_weight)
        self.backend_name = backend_name
        self.device = device
        info = info if isinstance(info, DetectorInfo) else DetectorInfo.from_dict(info or {})
        self.info: DetectorInfo = info if info.device is not None else dataclasses.replace(info, device=device)
        self.view_chunk = max(1, int(view_chunk or VIEW_CHUNK))  # views per encoder call (None: VIEW_CHUNK)
        self._runner: BaseRunner | None = None
        # None = our scoring (docs/runtime-spec.md section 8); a ReferenceSettings = the reference's (section 12)
        self.reference_scoring: Any = None
        self.calibration: Any = None  # artifacts.calibration.Calibration: per-part decisions (section 13)
        self.calibration_path: str = ""

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, backend: str | None = None, device: str = "auto",
                 view_chunk: int = VIEW_CHUNK, clip_weights: str | Path | None = None, calibration: Any = None,
                 **runner_options: Any) -> Detector:
        """Detector over a training run directory (torch: the reference for parity).

        ``clip_weights``: where the run's CLIP weights are now (checked against the run's tensor identity).
        ``calibration``: a calibration file or Calibration for this run (``calibrate_with``).
        ``runner_options`` go to the backend's runner (e.g. ``batch_size`` of the torch runner)."""
        from align3d_rt.artifacts.run_dir import load_run, with_clip_weights

        name = _backend_for(backend, "run", run_dir)
        run = with_clip_weights(load_run(run_dir), clip_weights)
        dev = resolve_device(device, registry.get(name).devices)
        info = DetectorInfo(source=Source.RUN, run_dir=str(Path(run_dir).resolve()), backend=name, device=dev,
                            precision=Precision.FP32, clip_name=run.clip_name, clip_weights_id=run.clip_weights_id,
                            seeds=run.config.get("seeds", run.config.get("seed")), run_config=run.config)
        det = cls(lambda: registry.create_runner(name, run, device=dev, **runner_options), run.render_settings,
                  run.fusion_weight, name, info, view_chunk, dev)
        return det.calibrate_with(calibration) if calibration is not None else det

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, backend: str | None = None, device: str = "auto",
                    view_chunk: int = VIEW_CHUNK, calibration: Any = None, **runner_options: Any) -> Detector:
        """Detector over an exported bundle (hash-verified on load).

        ``calibration``: a calibration file or Calibration for this bundle (``calibrate_with``).

        ``runner_options`` go to the backend's runner (e.g. ``threads`` or ``providers`` of onnxruntime)."""
        from align3d_rt.artifacts.bundle import load_bundle

        name = _backend_for(backend, "bundle", bundle_dir)
        # A backend that reads only the IR compiles it while the other files (the ONNX graph) hash (spec 2.4).
        bundle = load_bundle(bundle_dir, defer_unread=registry.get(name).reads_only_ir)
        if bundle.pending is None:
            return cls._over_bundle(bundle, bundle_dir, name, device, view_chunk, calibration, runner_options)
        try:
            det = cls._over_bundle(bundle, bundle_dir, name, device, view_chunk, None, runner_options)
            det._activate()
        except BaseException:
            bundle.pending.finish()  # a file problem is reported before any later one
            raise
        try:
            bundle.pending.finish()
        except BaseException:
            det.close()
            raise
        return det.calibrate_with(calibration) if calibration is not None else det

    @classmethod
    def _over_bundle(cls, bundle: Any, bundle_dir: str | Path, name: str, device: str, view_chunk: int,
                     calibration: Any, runner_options: dict[str, Any]) -> Detector:
        """The Detector over a loaded bundle (not activated)."""
        dev = resolve_device(device, registry.get(name).devices)
        manifest = dict(bundle.manifest)
        clip_entry = manifest.get("clip")
        clip = clip_entry if isinstance(clip_entry, dict) else {}
        info = DetectorInfo(source=Source.BUNDLE, bundle_dir=str(Path(bundle_dir).resolve()), backend=name,
                            device=dev, precision=bundle.precision, bundle_hash=bundle.onnx_sha256,
                            clip_name=clip.get("name"), clip_weights_id=clip.get("weights_id"),
                            seeds=manifest.get("seeds"), bundle_manifest=manifest)
        det = cls(lambda: registry.create_runner(name, bundle, device=dev, **runner_options), bundle.render_settings,
                  bundle.fusion_weight, name, info, view_chunk, dev)
        return det.calibrate_with(calibration) if calibration is not None else det

    # ---- calibration (docs/runtime-spec.md section 13) ------------------------------------------
    def calibration_source(self) -> dict[str, Any]:
        """This detector's identity for a calibration: the bundle's manifest_sha256 or the run's run_id."""
        from align3d_rt.artifacts.calibration import bundle_source, run_source

        info = self.info
        if info.source == Source.BUNDLE:
            return bundle_source(dict(info.bundle_manifest or {}), info.bundle_dir)
        if info.source == Source.RUN and info.run_dir is not None:
            if info.run_id is None:
                run_id = run_source(info.run_dir, str(info.clip_weights_id))["run_id"]
                self.info = info = dataclasses.replace(info, run_id=run_id)
            return {"kind": "run", "run_id": info.run_id, "path": info.run_dir}
        raise Align3DError(f"a {self.backend_name} detector has no bundle or run to calibrate against")

    def calibrate_with(self, calibration: Any, path: str | Path | None = None) -> Detector:
        """Attach a calibration (a file path or a Calibration; ``path`` names it in errors) after checking
        it is for this bundle/run; its scoring mode is checked when scoring starts. Returns the detector."""
        from align3d_rt.artifacts.calibration import Calibration, check_source, load_calibration

        if path is None:
            path = "calibration" if isinstance(calibration, Calibration) else calibration
        path = str(path)
        try:
            import scipy.sparse.csgraph
            import scipy.spatial  # noqa: F401
        except ImportError as err:  # the line-side install has no scipy
            raise Align3DError(f"{path}: decisions need scipy (its k-d tree finds the defect regions; {err}); "
                               "pip install scipy") from None
        cal = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
        check_source(cal, self.calibration_source(), path)
        self.calibration, self.calibration_path = cal, path
        return self

    def check_calibration_scoring(self) -> None:
        if self.calibration is None:
            return
        from align3d_rt.artifacts.calibration import scoring_name

        mine = scoring_name(self.reference_scoring)
        if self.calibration.scoring != mine:
            flag = "--scoring reference" if self.calibration.scoring == "reference" else "--scoring ours"
            raise Align3DError(f"{self.calibration_path}: calibration was made with {self.calibration.scoring} "
                               f"scoring, this detector uses {mine}; score with {flag} or calibrate again")

    def _decide(self, res: ScoreResult) -> ScoreResult | InputError:
        """Attach the calibration's decision; a non-finite score fails the part."""
        from align3d_rt.runtime.decisions import decide

        sample = res.sample
        assert sample is not None
        try:
            res.decision = decide(sample.points, res.fused, res.object_score, self.calibration)
        except InputError as err:
            return input_error(sample.source or sample.sample_id, str(err))
        return res

    # ---- runner lifetime ----------------------------------------------------------------------
    def __enter__(self) -> Detector:
        self._activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def runner(self) -> BaseRunner:
        """The active runner (created and activated on first use)."""
        return self._activate()

    def _activate(self) -> BaseRunner:
        if self._runner is None:
            self._runner = self._factory()
        if not self._runner.is_active:
            self._runner.activate()
            self.info = self.info.with_runner(getattr(self._runner, "detector_info", None) or {})  # compute precision
        return self._runner

    def close(self) -> None:
        """Deactivate the runner (frees its session/engine); the detector can be re-activated."""
        if self._runner is not None and self._runner.is_active:
            self._runner.deactivate()

    # ---- stages -------------------------------------------------------------------------------
    def settings_for_sample(self, sample: PointCloudSample) -> RenderSettings:
        """The run's settings (preset, renderer, image size) with the sample dataset's point size/normals."""
        dataset = sample.dataset
        if not dataset:
            return self.render_settings
        from align3d_rt.render import settings_for

        try:
            return settings_for(dataset, sample.category, base=self.render_settings)
        except ValueError:
            return self.render_settings  # unknown dataset name: keep the run's settings

    def render(self, sample: PointCloudSample) -> Any:
        """Render one sample's views with its settings (RenderResult; device arrays on 'cuda')."""
        from align3d_rt.render import render_views

        if sample.points.ndim != 2 or sample.points.shape[1] != 3 or sample.num_points == 0:
            raise input_error(sample.source or sample.sample_id, "no valid points to score")
        settings = self.settings_for_sample(sample)
        if self.device == "cuda":
            return render_views(sample.points, settings, device="cuda", stream=self.runner.stream, keep_on_device=True)
        with _CPU_KERNELS:
            return render_views(sample.points, settings)

    def _prepare(self, items: Sequence[Any], load: Callable[[Any], PointCloudSample] | None) -> _Batch:
        batch = _Batch(list(items), [], [], [], [], [])
        for item in items:
            t0 = t1 = time.perf_counter()
            sample = render = error = None
            try:
                sample = load(item) if load is not None else item
                t1 = time.perf_counter()
                render = self.render(sample)
            except InputError as err:
                error = err
            batch.samples.append(sample)
            batch.renders.append(render)
            batch.errors.append(error)
            batch.load_times.append(t1 - t0)
            batch.render_times.append(time.perf_counter() - t1)
        return batch

    def _encode(self, batch: _Batch) -> _Batch:
        ok = batch.ok
        if not ok:
            return batch
        runner = self._activate()
        t0 = time.perf_counter()
        views = arrays.concat([batch.renders[i].images for i in ok])
        batch.encoded = runner.infer(views, copy_outputs_to_host=self.device == "cpu", max_views=self.view_chunk)
        batch.encode_time = time.perf_counter() - t0
        return batch

    def _finish(self, batch: _Batch, keep_render: KeepRender) -> list[ScoreResult | InputError]:
        ok = batch.ok
        out: list[ScoreResult | InputError] = list(batch.errors)  # type: ignore[arg-type]
        if not ok:
            return out
        renders = [batch.renders[i] for i in ok]
        n_views = {int(r.pixels.shape[0]) for r in renders}
        if len(n_views) != 1:
            raise Align3DError(f"samples rendered with different view counts {sorted(n_views)}; score them separately")
        v = n_views.pop()
        image_size = int(renders[0].images.shape[1])
        t0 = time.perf_counter()
        assert batch.encoded is not None
        if self.device == "cuda":
            points = self._backproject_device(batch.encoded.patch_maps, renders, v, image_size)
        else:
            points = self._backproject_host(batch.encoded.patch_maps, renders, v, image_size)
        gprobs = np.asarray(arrays.to_host(batch.encoded.global_probs), dtype=np.float32)
        back_time = time.perf_counter() - t0
        b = len(ok)
        for j, i in enumerate(ok):
            sample = batch.samples[i]
            assert sample is not None
            pts = points[j]
            g = gprobs[j * v:(j + 1) * v].copy()
            result = ScoreResult(
                sample_id=sample.sample_id,
                point_scores=pts,
                object_score=scoring.object_score(pts[:, 2], g, self.fusion_weight),
                global_probs=g,
                maps=batch.encoded.patch_maps[j * v:(j + 1) * v],
                render=_host_render(batch.renders[i]) if _keeps(keep_render, sample) else None,
                timings={"load": batch.load_times[i], "render": batch.render_times[i], "encode": batch.encode_time / b,
                         "backproject": back_time / b, "batch_size": float(b)},
                sample=sample,
            )
            checked = self._to_reference(result) if self.reference_scoring is not None else result
            checked = _finite_or_failed(checked, sample)
            if self.calibration is not None and isinstance(checked, ScoreResult):
                checked = self._decide(checked)
            out[i] = checked
        return out

    def _to_reference(self, res: ScoreResult) -> ScoreResult | InputError:
        """Reference mode: the fused channel and the object score become the reference's
        (``scoring_reference``); render/aligned channels and the global probabilities stay."""
        from align3d_rt.scoring_reference import ReferenceScoringError, reference_scores

        sample = res.sample
        assert sample is not None
        try:
            ref = reference_scores(res.point_scores, res.global_probs, sample.grid_index, sample.grid_shape,
                                   self.reference_scoring, sample.dataset)
        except ReferenceScoringError as err:
            return input_error(sample.source or sample.sample_id, str(err))
        res.point_scores = res.point_scores.copy()
        res.point_scores[:, 2] = ref.point_scores
        res.object_score = ref.object_score
        res.reference = ref
        return res

    def _backproject_host(self, maps: np.ndarray, renders: list[Any], v: int, image_size: int) -> list[np.ndarray]:
        """One CPU back-projection over the padded batch."""
        from align3d_rt.kernels import backproject

        b = len(renders)
        counts = [int(r.pixels.shape[1]) for r in renders]
        n_max = max(counts)
        pixels = np.zeros((b, v, n_max, 2), dtype=np.int32)
        visible = np.zeros((b, v, n_max), dtype=bool)
        for i, r in enumerate(renders):
            pixels[i, :, :counts[i]] = r.pixels
            visible[i, :, :counts[i]] = r.visible
        with _CPU_KERNELS:
            scores = backproject(maps.reshape(b, v, *maps.shape[1:]), pixels, visible, image_size=image_size,
                                 fusion_weight=self.fusion_weight)
        return [np.ascontiguousarray(scores[i, :counts[i]]) for i in range(b)]

    def _backproject_device(self, maps: Any, renders: list[Any], v: int, image_size: int) -> list[np.ndarray]:
        """CUDA back-projection per sample on the runner's stream; only (N,3) scores come back."""
        from align3d_rt.kernels import backproject_cuda

        stream = self.runner.stream
        d_maps = arrays.as_numba(maps)
        g = int(d_maps.shape[3])
        out = []
        for j, r in enumerate(renders):
            n = int(r.pixels.shape[1])
            scores = backproject_cuda(d_maps[j * v:(j + 1) * v].reshape(1, v, 2, g, g), r.pixels.reshape(1, v, n, 2),
                                      r.visible.reshape(1, v, n), image_size=image_size,
                                      fusion_weight=self.fusion_weight, stream=stream)
            out.append(scores.copy_to_host(stream=stream)[0])
        if hasattr(stream, "synchronize"):
            stream.synchronize()
        return out

    # ---- scoring -------------------------------------------------------------------------------
    def score(self, samples: Sequence[PointCloudSample], keep_render: bool = True) -> list[ScoreResult]:
        """Score one batch: render every sample, one encoder pass over all views, one back-projection.

        A sample that cannot be rendered raises its InputError (``score_stream`` reports it instead)."""
        if not samples:
            return []
        self.check_calibration_scoring()
        self._activate()
        batch = self._prepare(samples, None)
        for err in batch.errors:
            if err is not None:
                raise err
        results = self._finish(self._encode(batch), keep_render)
        for res in results:
            if isinstance(res, InputError):  # e.g. scores that are not finite: never a result
                raise res
        return results  # type: ignore[return-value]

    def score_one(self, sample: PointCloudSample, keep_render: bool = True) -> ScoreResult:
        return self.score([sample], keep_render=keep_render)[0]

    def score_stream(self, items: Iterable[Any], load: Callable[[Any], PointCloudSample] | None = None,
                     batch_size: int = 1, keep_render: KeepRender = False, depth: int = 2
                     ) -> Iterator[tuple[Any, ScoreResult | InputError]]:
        """Score many clouds with the stages overlapped; yields (item, result or InputError) in input order.

        ``load(item)`` turns an item (e.g. a path) into a PointCloudSample on the prepare thread (items
        are samples when None); an InputError there or in rendering is yielded for that item and the
        others go on. At most ``depth`` batches wait between two stages. Any other exception stops the
        pipeline and is raised here. ``keep_render`` may be a predicate on the sample (keep only the
        renders a caller will draw: on a GPU each kept render is copied to the host).
        """
        self.check_calibration_scoring()
        self._activate()
        stop = threading.Event()
        prepared: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        encoded: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        done: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        stages = [
            threading.Thread(target=_run_stage, name="align3d-prepare", daemon=True,
                             args=(_chunks(items, batch_size), lambda c: self._prepare(c, load), prepared, stop)),
            threading.Thread(target=_run_stage, name="align3d-encode", daemon=True,
                             args=(_drain(prepared, stop), self._encode, encoded, stop)),
            threading.Thread(target=_run_stage, name="align3d-finish", daemon=True,
                             args=(_drain(encoded, stop), lambda b: (b.items, self._finish(b, keep_render)), done,
                                   stop)),
        ]
        for t in stages:
            t.start()
        try:
            for batch_items, results in _drain(done, stop):
                yield from zip(batch_items, results, strict=True)
        finally:
            stop.set()
            for t in stages:
                t.join(timeout=60)

    def describe(self) -> dict[str, Any]:
        """What this detector uses (for manifests): render settings, backend, device, model ids, fusion weight."""
        out = {k: v for k, v in self.info.to_dict().items() if k not in ORIGIN_KEYS}
        out["render_settings"] = self.render_settings.to_dict()
        out["fusion_weight"] = self.fusion_weight
        out["scoring"] = {"mode": "ours"} if self.reference_scoring is None else self.reference_scoring.to_dict()
        return out


def _finite_or_failed(res: ScoreResult | InputError, sample: PointCloudSample) -> ScoreResult | InputError:
    """A result whose scores are not all finite is a failed sample (NaN/Inf weights or input), never a result."""
    if isinstance(res, InputError):
        return res
    scores = np.asarray(arrays.to_host(res.point_scores))
    bad = int(np.count_nonzero(~np.isfinite(scores).all(axis=-1))) if scores.size else 0
    if bad or not np.isfinite(res.object_score) or not np.isfinite(np.asarray(res.global_probs)).all():
        where = sample.source or sample.sample_id
        return InputError(f"{where}: scores are not finite ({bad} of {scores.shape[0]} point(s), object score "
                          f"{float(res.object_score)}); the model weights or the input hold NaN/Inf")
    return res


def _backend_for(backend: str | None, source: str, path: str | Path) -> str:
    """The backend to use for a run or bundle (the registry's default when None), checked to fit."""
    name = backend or registry.default_backend(source)
    spec = registry.get(name)
    if spec.source != source:
        fits = ", ".join(registry.list_backends(source))
        needs = "an exported bundle (--bundle)" if spec.source == "bundle" else "a training run directory (--run)"
        here = "a run directory" if source == "run" else "a bundle"
        raise Align3DError(f"{path}: backend '{name}' needs {needs}; {here} runs on: {fits}")
    return name


def _host_render(render: Any) -> Any:
    """The RenderResult with host arrays (device renders are copied once, when kept)."""
    if not arrays.is_device(render.images):
        return render
    import dataclasses

    return dataclasses.replace(render, images=arrays.to_host(render.images), pixels=arrays.to_host(render.pixels),
                               visible=arrays.to_host(render.visible))


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= max(1, size):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put unless the pipeline stopped; False when it did."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _drain(q: queue.Queue[Any], stop: threading.Event) -> Iterator[Any]:
    """Items of ``q`` until the end marker; a stage failure is raised here."""
    while not stop.is_set():
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is _END:
            return
        if isinstance(item, _Failed):
            raise item.error
        yield item


def _run_stage(source: Iterator[Any], work: Callable[[Any], Any], out: queue.Queue[Any],
               stop: threading.Event) -> None:
    """Apply ``work`` to each item of ``source`` and pass the results on; then the end marker."""
    try:
        for item in source:
            if not _put(out, work(item), stop):
                return
        _put(out, _END, stop)
    except BaseException as err:  # noqa: BLE001 - handed to the caller's thread and raised there
        _put(out, _Failed(err), stop)
