"""The rendered views with the fused anomaly map over them, as images for the page."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from align3d_rt.eval.outputs import heat_colors, object_only
from align3d_rt.scoring import upsample_map

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def overlay_views(images: np.ndarray, maps: np.ndarray, vmin: float | None = None,
                  vmax: float | None = None, alpha: float = 0.5) -> np.ndarray:
    """(V,S,S,3) uint8 views + (V,G,G) maps -> (V,S,S,3) uint8: the map (jet, one shared scale, the
    same colouring as KEY.png) blended over the object's pixels; the white background stays."""
    images = np.asarray(images, dtype=np.uint8)
    size = int(images.shape[1])
    ups = np.stack([upsample_map(np.asarray(m, dtype=np.float32), size) for m in maps])
    lo = float(ups.min()) if vmin is None else float(vmin)
    hi = float(ups.max()) if vmax is None else float(vmax)
    out = images.astype(np.float64)
    for i in range(images.shape[0]):
        heat = object_only(ups[i], images[i])
        rgb = heat_colors(np.asarray(heat.filled(lo)).ravel(), lo, hi).reshape(size, size, 3) * 255.0
        on = ~np.ma.getmaskarray(heat)
        out[i][on] = (1.0 - alpha) * out[i][on] + alpha * rgb[on]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """An (H,W,3) uint8 image as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def views_as_png(views: np.ndarray | Sequence[bytes] | None) -> list[bytes]:
    """(V,S,S,3) uint8 images or a sequence of PNG files' bytes -> PNG bytes per view."""
    if views is None:
        return []
    if isinstance(views, np.ndarray):
        if views.ndim != 4 or views.shape[-1] != 3 or views.dtype != np.uint8:
            raise ValueError(f"views must be (V,S,S,3) uint8, got {views.shape} {views.dtype}")
        return [encode_png(v) for v in views]
    pngs = [bytes(v) for v in views]
    for i, png in enumerate(pngs):
        if not png.startswith(PNG_SIGNATURE):
            raise ValueError(f"view {i} is not PNG data")
    return pngs
