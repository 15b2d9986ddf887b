"""On-disk cache of frozen-CLIP features of rendered training views (and what stage 2 needs).

Per sample, two safetensors files under ``paths.cache_dir('features')``:

- ``<key>.gray.safetensors``: 'global' (V,D) f16, 'patches' (V,T,D) f16 of the gray renders, plus
  'pixels' (V,N,2) int16, 'visible' (V,N) bool, 'point_labels' (N,) uint8, 'gt_masks' (V,S,S)
  uint8 0/1 and 'label' (1,) uint8 (object label).
- ``<key>.rgb.safetensors``: 'global', 'patches' of the RGB-coloured renders (stage 1 only).

The key hashes the render settings, the CLIP name + weights id, the sample file (path, size,
mtime) and the cache format version. Files are written atomically; a second run reuses them, so
stage 1 runs without CLIP at all once the cache is warm.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from align3d_rt import distributed as dist_util
from align3d_rt.artifacts.run_dir import save_tensors
from align3d_rt.io_utils import sha256_json
from align3d_rt.paths import cache_dir
from align3d_rt.render.views import RenderSettings

if TYPE_CHECKING:
    import torch

__all__ = ["CACHE_FORMAT", "CacheEntry", "FeatureCache", "ViewEncoder", "clip_weights_id", "sample_fingerprint",
           "render_and_encode", "shared_encoder"]

CACHE_FORMAT = 1
GRAY_KEYS = ("global", "patches", "pixels", "visible", "point_labels", "gt_masks", "label")
RGB_KEYS = ("global", "patches")


def clip_weights_id(name: str, weights: str | None, seed: int = 0) -> str | None:
    """The weights id load_clip would report, without building the model (None: pretrained default)."""
    from align3d_rt.model.clip_backbone import weights_id_for

    return weights_id_for(name, weights, seed)


def sample_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Path, size and mtime of a sample file: the part of the cache key that names the data."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


class ViewEncoder:
    """Frozen DPAM visual tower with CLIP preprocessing: uint8 views (V,S,S,3) -> (g (V,D), P (V,T,D)) float32."""

    def __init__(self, clip_name: str, clip_weights: str | None, seed: int = 0, device: str = "cpu",
                 batch_views: int = 9) -> None:
        import torch

        from align3d_rt.model.clip_backbone import load_clip
        from align3d_rt.model.dpam import DPAMVisual

        model, info = load_clip(clip_name, clip_weights, seed=seed)
        self.info = info
        self.model = model  # kept for the text tower (stage 2 prompt learners)
        self.device = torch.device(device)
        self.visual = DPAMVisual(model.visual, info.dpam_start).to(self.device).eval()
        self.mean = torch.tensor(info.image_mean, dtype=torch.float32, device=self.device).reshape(1, 3, 1, 1)
        self.std = torch.tensor(info.image_std, dtype=torch.float32, device=self.device).reshape(1, 3, 1, 1)
        self.batch_views = max(1, int(batch_views))
        self.calls = 0

    def __call__(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        import torch
        import torch.nn.functional as F

        self.calls += 1
        outs_g, outs_p = [], []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_views):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch_views])).to(self.device)
                x = chunk.permute(0, 3, 1, 2).float() / 255.0
                size = self.info.image_size
                if x.shape[-1] != size or x.shape[-2] != size:
                    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
                x = (x - self.mean) / self.std
                g, p = self.visual(x)
                outs_g.append(g.float())
                outs_p.append(p.float())
        return torch.cat(outs_g), torch.cat(outs_p)


_ENCODERS: dict[tuple[str, str | None, int, str], ViewEncoder] = {}


def shared_encoder(clip_name: str, clip_weights: str | None, seed: int = 0, device: str = "cpu") -> ViewEncoder:
    """A ViewEncoder reused within the process (the CLIP is frozen); keeps only the last one loaded."""
    key = (clip_name, clip_weights, seed, device)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = ViewEncoder(clip_name, clip_weights, seed, device)
    return _ENCODERS[key]


def render_and_encode(sample: Any, settings: RenderSettings, encoder: ViewEncoder,
                      need_gray: bool = True,
                      need_rgb: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Render one PointCloudSample and encode its views: (gray record, rgb record or None).

    The gray record holds the features and the geometry stage 2 needs (module docstring).
    """
    from align3d_rt.errors import input_error
    from align3d_rt.render import render_views

    if need_rgb and sample.colors is None:
        raise input_error(sample.source or sample.sample_id, "no RGB colours: stage 1 needs RGB renders "
                          "(MVTec 3D-AD, Eyecandies or synthetic data)")
    n = sample.num_points
    labels = sample.point_labels if sample.point_labels is not None else np.zeros(n, np.uint8)
    colors = sample.colors if need_rgb else None
    result = render_views(sample.points, settings, colors=colors, labels=labels)
    gray: dict[str, np.ndarray] = {}
    if need_gray:
        g, p = encoder(result.images)
        v, s = result.images.shape[0], result.images.shape[1]
        gt = result.gt_masks if result.gt_masks is not None else np.zeros((v, s, s), np.uint8)
        gray = {
            "global": g.cpu().numpy().astype(np.float16),
            "patches": p.cpu().numpy().astype(np.float16),
            "pixels": np.asarray(result.pixels).astype(np.int16),
            "visible": np.asarray(result.visible, dtype=bool),
            "point_labels": (np.asarray(labels) > 0).astype(np.uint8),
            "gt_masks": (np.asarray(gt) > 0).astype(np.uint8),
            "label": np.array([1 if sample.is_anomalous else 0], np.uint8),
        }
    rgb = None
    if need_rgb:
        if result.rgb_images is None:
            raise ValueError("renderer returned no RGB images although colours were given")
        g, p = encoder(result.rgb_images)
        rgb = {"global": g.cpu().numpy().astype(np.float16), "patches": p.cpu().numpy().astype(np.float16)}
    return gray, rgb


@dataclass
class CacheEntry:
    """One cached training sample."""

    sample_id: str
    gray_path: Path
    rgb_path: Path | None
    label: int
    meta: dict = field(default_factory=dict)

    def load(self, keys: Iterable[str], rgb: bool = False) -> dict[str, np.ndarray]:
        """Read only the named tensors from the gray (or rgb) file."""
        from safetensors import safe_open

        path = self.rgb_path if rgb else self.gray_path
        if path is None:
            raise FileNotFoundError(f"{self.sample_id}: no RGB features cached")
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in keys}


def _readable(path: Path, keys: tuple[str, ...]) -> bool:
    """True when the file exists and is a safetensors file holding the keys (else it is rebuilt)."""
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return set(keys) <= set(f.keys())
    except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed
        return False


class FeatureCache:
    """Builds and reuses cached features for a list of samples (SampleRef-like: .path, .load()).

    ``encoder_factory`` builds the ViewEncoder lazily, only when some entry is missing; the number of
    samples actually rendered+encoded is counted in ``self.encoded`` (tests use it).
    """

    def __init__(self, clip_name: str, clip_weights: str | None, settings: RenderSettings, clip_seed: int = 0,
                 root: Path | None = None, device: str = "cpu",
                 encoder_factory: Callable[[], ViewEncoder] | None = None) -> None:
        self.clip_name = clip_name
        self.clip_weights = clip_weights
        self.clip_seed = clip_seed
        self.settings = settings
        self.root = Path(root) if root is not None else cache_dir("features")
        self.device = device
        self._factory = encoder_factory or (lambda: shared_encoder(clip_name, clip_weights, clip_seed, device))
        self._encoder: ViewEncoder | None = None
        self._weights_id = clip_weights_id(clip_name, clip_weights, clip_seed)
        self.encoded = 0

    @property
    def encoder(self) -> ViewEncoder:
        if self._encoder is None:
            self._encoder = self._factory()
            if self._weights_id is None:
                self._weights_id = self._encoder.info.weights_id
        return self._encoder

    @property
    def weights_id(self) -> str:
        if self._weights_id is None:
            return self.encoder.info.weights_id
        return self._weights_id

    def key(self, ref: Any) -> str:
        """Cache key of a SampleRef: its files (path, size, mtime), render settings, CLIP, format."""
        files = [sample_fingerprint(ref.path)]
        for extra in ("rgb_path", "gt_path"):
            p = getattr(ref, extra, None)
            if p is not None and Path(p).exists():
                files.append(sample_fingerprint(p))
        return sha256_json({
            "format": CACHE_FORMAT,
            "render": self.settings.to_dict(),
            "clip": {"name": self.clip_name, "weights_id": self.weights_id},
            "sample": files,
        })

    def prepare(self, refs: list[Any], need_rgb: bool, progress: bool = False) -> list[CacheEntry]:
        """Entries for every ref, rendering + encoding only what is not cached yet.

        Under torchrun each rank first fills its shard (``refs[rank::world]``, atomic writes), then,
        after a barrier, the node's ranks split what is still missing on this node (a cache folder that
        is not shared between nodes); after a second barrier every rank reads every entry. No file is
        written by two ranks of one node, and none is read before it is complete.
        """
        from tqdm import tqdm

        info = dist_util.current()
        show = progress and info.is_main
        if info.distributed:
            for ref in tqdm(dist_util.shard(refs, info), desc="features", unit="sample", disable=not show, leave=False):
                self._entry(ref, need_rgb)
            dist_util.barrier()
            missing = [ref for ref in refs if self._missing(ref, need_rgb)]
            for ref in missing[info.local_rank::info.local_world_size]:
                self._entry(ref, need_rgb)
            dist_util.barrier()
            show = False
        return [self._entry(ref, need_rgb) for ref in tqdm(refs, desc="features", unit="sample", disable=not show,
                                                             leave=False)]

    def _paths(self, ref: Any) -> tuple[Path, Path]:
        key = self.key(ref)
        return self.root / f"{key}.gray.safetensors", self.root / f"{key}.rgb.safetensors"

    def _missing(self, ref: Any, need_rgb: bool) -> bool:
        gray_path, rgb_path = self._paths(ref)
        return not _readable(gray_path, GRAY_KEYS) or (need_rgb and not _readable(rgb_path, RGB_KEYS))

    def _entry(self, ref: Any, need_rgb: bool) -> CacheEntry:
        """The entry of one ref, rendering + encoding it first when its files are missing."""
        gray_path, rgb_path = self._paths(ref)
        need_gray_now = not _readable(gray_path, GRAY_KEYS)
        need_rgb_now = need_rgb and not _readable(rgb_path, RGB_KEYS)
        sample_id = str(ref.path)
        if need_gray_now or need_rgb_now:
            sample = ref.load()
            sample_id = sample.sample_id
            gray, rgb = render_and_encode(sample, self.settings, self.encoder, need_gray_now, need_rgb_now)
            meta = {"sample": sample_id, "format": str(CACHE_FORMAT), "clip": self.clip_name}
            if need_gray_now:
                save_tensors(gray_path, gray, meta)
            if rgb is not None:
                save_tensors(rgb_path, rgb, meta)
            self.encoded += 1
        label = int(CacheEntry(sample_id, gray_path, None, 0).load(["label"])["label"][0])
        return CacheEntry(sample_id, gray_path, rgb_path if need_rgb else None, label)
