"""The inference pipeline shared by every backend: render -> encode -> back-project -> score.

Only the encoder differs between backends (torch reference, onnxruntime, tensorrt); rendering,
back-projection, fusion and the object score are this module's code. No heavy import at module
level: the onnxruntime path runs with torch unimportable.

Object score = max over points of the fused point score
             + mean over views of the fused global abnormal probability,
fused = w * aligned + (1 - w) * render (w = the run's fusion weight).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from align3d_rt.data.sample import PointCloudSample
from align3d_rt.errors import Align3DError, BackendUnavailable, input_error
from align3d_rt.infer.backend import EncoderBackend, EncoderOutput
from align3d_rt.render.views import RenderSettings

TORCH_BACKENDS = ("torch",)
BUNDLE_BACKENDS = ("onnxruntime", "tensorrt")
_INSTALL_HINT = {
    "torch": "pip install torch open_clip_torch",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu)",
    "tensorrt": "pip install tensorrt (needs an NVIDIA GPU)",
}


@dataclass
class ScoreResult:
    """The scores of one sample.

    point_scores (N,3) float32: channels (render, aligned, fused), one row per sample point.
    view_maps (V,2,G,G) float32: per-view patch abnormal probabilities (branch 0 render, 1 aligned).
    global_probs (V,2) float32: per-view global abnormal probabilities per branch.
    render: the RenderResult (images, pixels, visible) or None when not kept.
    timings: seconds per stage (render, encode, backproject); encode/backproject are the batch's time
    divided by the batch size.
    """

    sample_id: str
    point_scores: np.ndarray
    object_score: float
    view_maps: np.ndarray
    global_probs: np.ndarray
    render: Any = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fused(self) -> np.ndarray:
        """(N,) fused point scores."""
        return self.point_scores[:, 2]


def object_score(fused_points: np.ndarray, global_probs: np.ndarray, fusion_weight: float) -> float:
    """max(fused point score) + mean over views of the fused global abnormal probability."""
    g = fusion_weight * global_probs[:, 1] + (1.0 - fusion_weight) * global_probs[:, 0]
    peak = float(fused_points.max()) if fused_points.size else 0.0
    return peak + float(np.mean(g))


def _backend_unavailable(name: str, err: ModuleNotFoundError) -> BackendUnavailable:
    missing = err.name or str(err)
    return BackendUnavailable(
        f"backend '{name}' is not available here: module '{missing}' is not installed ({_INSTALL_HINT.get(name, '')})"
    )


def _torch_backend_factory(run_dir: Path, device: str) -> Callable[[], EncoderBackend]:
    def make() -> EncoderBackend:
        try:
            from align3d_rt.infer.torch_backend import TorchBackend
        except ModuleNotFoundError as err:
            raise _backend_unavailable("torch", err) from None
        try:
            return TorchBackend.from_run(run_dir, device=device)
        except ModuleNotFoundError as err:
            raise _backend_unavailable("torch", err) from None

    return make


def _bundle_backend_factory(bundle: Any, backend: str, device: str) -> Callable[[], EncoderBackend]:
    def make() -> EncoderBackend:
        try:
            if backend == "onnxruntime":
                from align3d_rt.infer.ort_backend import OrtBackend

                return OrtBackend(bundle)
            from align3d_rt.infer.trt_backend import TrtBackend

            return TrtBackend(bundle)
        except ModuleNotFoundError as err:
            raise _backend_unavailable(backend, err) from None

    return make


class Detector:
    """Point-cloud anomaly detector: a context manager that activates its encoder backend once.

    Build with :meth:`from_run` (torch reference) or :meth:`from_bundle` (exported ONNX/TensorRT).
    The backend is constructed lazily, on first use or ``__enter__``.
    """

    def __init__(
        self,
        backend_factory: Callable[[], EncoderBackend],
        render_settings: RenderSettings,
        fusion_weight: float,
        backend_name: str,
        info: dict[str, Any] | None = None,
        view_chunk: int = 36,
    ) -> None:
        self._factory = backend_factory
        self.render_settings = render_settings
        self.fusion_weight = float(fusion_weight)
        self.backend_name = backend_name
        self.info: dict[str, Any] = dict(info or {})
        self.view_chunk = max(1, int(view_chunk))
        self._backend: EncoderBackend | None = None
        self._entered = False

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, backend: str = "torch", device: str = "cpu", view_chunk: int = 36) -> "Detector":
        """Detector over a training run directory (torch backend; the reference for parity)."""
        if backend not in TORCH_BACKENDS:
            raise Align3DError(
                f"{run_dir}: backend '{backend}' needs an exported bundle (use from_bundle / --bundle); "
                f"a run directory runs on: {', '.join(TORCH_BACKENDS)}"
            )
        from align3d_rt.train.run_dir import load_run

        run = load_run(run_dir)
        info = {
            "source": "run",
            "run_dir": str(Path(run_dir).resolve()),
            "backend": backend,
            "device": device,
            "precision": "fp32",
            "clip_name": run.clip_name,
            "clip_weights_id": run.clip_weights_id,
            "seeds": run.config.get("seeds", run.config.get("seed")),
            "run_config": run.config,
        }
        return cls(_torch_backend_factory(Path(run_dir), device), run.render_settings, run.fusion_weight, backend, info, view_chunk)

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, backend: str = "onnxruntime", view_chunk: int = 36) -> "Detector":
        """Detector over an exported bundle (onnxruntime or tensorrt)."""
        if backend not in BUNDLE_BACKENDS:
            raise Align3DError(f"{bundle_dir}: backend '{backend}' cannot run a bundle; choose one of {', '.join(BUNDLE_BACKENDS)}")
        from align3d_rt.export.bundle import load_bundle

        bundle = load_bundle(bundle_dir)
        manifest = dict(bundle.manifest)
        clip = manifest.get("clip") if isinstance(manifest.get("clip"), dict) else {}
        onnx_rel = bundle.onnx_path.relative_to(bundle.path).as_posix()
        info = {
            "source": "bundle",
            "bundle_dir": str(Path(bundle_dir).resolve()),
            "backend": backend,
            "precision": bundle.precision,
            "bundle_hash": manifest.get("files", {}).get(onnx_rel),
            "clip_name": clip.get("name"),
            "clip_weights_id": clip.get("weights_id"),
            "seeds": manifest.get("seeds"),
            "bundle_manifest": manifest,
        }
        settings, fusion = bundle.render_settings, bundle.fusion_weight
        return cls(_bundle_backend_factory(bundle, backend, "cuda" if backend == "tensorrt" else "cpu"), settings, fusion, backend, info, view_chunk)

    # ---- backend lifetime ---------------------------------------------------------------------
    def __enter__(self) -> "Detector":
        self._activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _activate(self) -> EncoderBackend:
        if self._backend is None:
            self._backend = self._factory()
        if not self._entered:
            self._backend.__enter__()
            self._entered = True
        return self._backend

    def close(self) -> None:
        """Deactivate the backend (frees its session/engine); the detector can be re-activated."""
        if self._backend is not None and self._entered:
            self._entered = False
            self._backend.__exit__(None, None, None)

    # ---- scoring -------------------------------------------------------------------------------
    def settings_for_sample(self, sample: PointCloudSample) -> RenderSettings:
        """The run's settings (preset, renderer, image size) with the sample dataset's point size/normals."""
        dataset = sample.dataset or self.info.get("dataset", "")
        if not dataset:
            return self.render_settings
        from align3d_rt.render import settings_for

        try:
            return settings_for(dataset, sample.category, base=self.render_settings)
        except ValueError:
            return self.render_settings  # unknown dataset name: keep the run's settings

    def render(self, sample: PointCloudSample) -> Any:
        """Render one sample's views with its settings (RenderResult)."""
        from align3d_rt.render import render_views

        if sample.points.ndim != 2 or sample.points.shape[1] != 3 or sample.num_points == 0:
            raise input_error(sample.source or sample.sample_id, "no valid points to score")
        return render_views(sample.points, self.settings_for_sample(sample))

    def score(self, samples: Sequence[PointCloudSample], keep_render: bool = True) -> list[ScoreResult]:
        """Score a batch: render every sample, one encoder pass over all views (in chunks of
        ``view_chunk``), one back-projection over the padded batch."""
        if not samples:
            return []
        from align3d_rt.kernels import backproject

        backend = self._activate()
        renders, render_times = [], []
        for sample in samples:
            t0 = time.perf_counter()
            renders.append(self.render(sample))
            render_times.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        views = np.concatenate([np.asarray(r.images) for r in renders], axis=0)
        encoded = encode_views(backend, views, self.view_chunk)
        maps, gprobs = encoded.patch_maps, encoded.global_probs
        encode_time = time.perf_counter() - t0

        t0 = time.perf_counter()
        n_views = [int(r.pixels.shape[0]) for r in renders]
        if len(set(n_views)) != 1:
            raise Align3DError(f"samples rendered with different view counts {sorted(set(n_views))}; score them separately")
        b, v = len(samples), n_views[0]
        n_max = max(int(r.pixels.shape[1]) for r in renders)
        pixels = np.zeros((b, v, n_max, 2), dtype=np.int32)
        visible = np.zeros((b, v, n_max), dtype=bool)
        for i, r in enumerate(renders):
            n = r.pixels.shape[1]
            pixels[i, :, :n] = r.pixels
            visible[i, :, :n] = r.visible
        batch_maps = maps.reshape(b, v, *maps.shape[1:])
        image_size = int(renders[0].images.shape[1])
        point_scores = backproject(batch_maps, pixels, visible, image_size=image_size, fusion_weight=self.fusion_weight)
        back_time = time.perf_counter() - t0

        results = []
        for i, (sample, r) in enumerate(zip(samples, renders)):
            pts = np.ascontiguousarray(np.asarray(point_scores[i, : sample.num_points], dtype=np.float32))
            g = gprobs[i * v : (i + 1) * v]
            results.append(
                ScoreResult(
                    sample_id=sample.sample_id,
                    point_scores=pts,
                    object_score=object_score(pts[:, 2], g, self.fusion_weight),
                    view_maps=batch_maps[i].copy(),
                    global_probs=g.copy(),
                    render=r if keep_render else None,
                    timings={"render": render_times[i], "encode": encode_time / b, "backproject": back_time / b, "batch_size": float(b)},
                )
            )
        return results

    def score_one(self, sample: PointCloudSample, keep_render: bool = True) -> ScoreResult:
        return self.score([sample], keep_render=keep_render)[0]

    def describe(self) -> dict[str, Any]:
        """What this detector uses (for manifests): render settings, backend, model ids, fusion weight."""
        out = {k: v for k, v in self.info.items() if k not in ("run_config", "bundle_manifest")}
        out["render_settings"] = self.render_settings.to_dict()
        out["fusion_weight"] = self.fusion_weight
        return out


def encode_views(backend: EncoderBackend, views: np.ndarray, chunk: int) -> EncoderOutput:
    """Run a backend over many views in chunks; concatenates the outputs."""
    outs = [backend.infer(views[i : i + chunk]) for i in range(0, len(views), chunk)]
    return EncoderOutput(
        patch_maps=np.concatenate([np.asarray(o.patch_maps, dtype=np.float32) for o in outs], axis=0),
        global_probs=np.concatenate([np.asarray(o.global_probs, dtype=np.float32) for o in outs], axis=0),
    )
