"""Back-projection kernel vs a plain torch reference (interpolate + gather + masked mean)."""
from __future__ import annotations

import numpy as np
import pytest
from blocking import run_blocked

from align3d_rt.kernels import backproject
from align3d_rt.scoring import bilinear_tables


def torch_reference(maps: np.ndarray, pixels: np.ndarray, visible: np.ndarray, image_size: int,
                    fusion_weight: float) -> np.ndarray:
    """The formulation the kernel must equal: build the SxS maps, gather, masked mean."""
    torch = pytest.importorskip("torch")
    b, v, _, g, _ = maps.shape
    up = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(maps)).reshape(b * v, 2, g, g),
                                         size=(image_size, image_size), mode="bilinear",
                                         align_corners=False).reshape(b, v, 2, image_size, image_size)
    p = torch.from_numpy(np.ascontiguousarray(pixels)).long()
    bi = torch.arange(b)[:, None, None]
    vi = torch.arange(v)[None, :, None]
    gathered = up[bi, vi, :, p[..., 1], p[..., 0]]  # (B,V,N,2)
    mask = torch.from_numpy(np.ascontiguousarray(visible)).float()[..., None]
    mean = (gathered * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    fused = fusion_weight * mean[..., 1] + (1.0 - fusion_weight) * mean[..., 0]
    return torch.cat([mean, fused[..., None]], dim=-1).numpy()


def make_inputs(rng: np.random.Generator, b: int, v: int, n: int, g: int,
                s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    maps = rng.random((b, v, 2, g, g), dtype=np.float32)
    pixels = rng.integers(0, s, (b, v, n, 2)).astype(np.int32)
    corners = np.array([[0, 0], [s - 1, s - 1], [0, s - 1], [s - 1, 0], [0, s // 2], [s - 1, s // 3]], np.int32)
    pixels[:, :, : len(corners)] = corners
    visible = rng.random((b, v, n)) < 0.5
    visible[:, :, 0] = True          # visible in all views (a corner pixel)
    visible[:, :, 1] = False         # visible nowhere -> 0
    visible[:, :, 2] = False
    visible[:, v // 2, 2] = True     # visible in exactly one view
    return maps, pixels, visible


@pytest.mark.parametrize("b,v,n,g,s", [(2, 9, 3000, 24, 336), (1, 5, 2000, 16, 224), (3, 4, 500, 7, 30)])
def test_matches_torch_reference(b: int, v: int, n: int, g: int, s: int) -> None:
    rng = np.random.default_rng(b * 100 + g)
    maps, pixels, visible = make_inputs(rng, b, v, n, g, s)
    out = backproject(maps, pixels, visible, image_size=s, fusion_weight=0.5)
    ref = torch_reference(maps, pixels, visible, s, 0.5)
    assert out.shape == (b, n, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)
    assert np.all(out[:, 1] == 0.0)
    # Exactly one view: the upsampled value itself, no averaging.
    assert np.all(visible.sum(1)[:, 2] == 1)


def test_fusion_weight_and_noncontiguous_inputs() -> None:
    rng = np.random.default_rng(7)
    maps, pixels, visible = make_inputs(rng, 2, 6, 400, 24, 336)
    # Non-contiguous views of the same data: reversed views, Fortran order, strided pixels.
    maps_nc = np.asfortranarray(maps[:, ::-1])
    pix_wide = np.zeros((2, 6, 400, 4), np.int32)
    pix_wide[..., ::2] = pixels[:, ::-1]
    vis_nc = visible[:, ::-1]
    out = backproject(maps_nc, pix_wide[..., ::2], vis_nc, image_size=336, fusion_weight=0.3)
    ref = torch_reference(maps[:, ::-1], pixels[:, ::-1], visible[:, ::-1], 336, 0.3)
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out[..., 2], 0.3 * out[..., 1] + 0.7 * out[..., 0], atol=1e-6)


def test_constant_map_and_tables() -> None:
    # A constant map stays constant wherever the point lands; tables stay inside the grid.
    maps = np.full((1, 3, 2, 24, 24), 0.25, np.float32)
    maps[:, :, 1] = 0.75
    pixels = np.random.default_rng(1).integers(0, 336, (1, 3, 50, 2)).astype(np.int32)
    out = backproject(maps, pixels, np.ones((1, 3, 50), bool))
    np.testing.assert_allclose(out[0], np.tile([0.25, 0.75, 0.5], (50, 1)), atol=1e-7)
    i0, i1, lam1 = bilinear_tables(24, 336)
    assert i0.min() == 0 and i1.max() == 23 and np.all(i1 >= i0)
    assert np.all((lam1 >= 0) & (lam1 < 1))


def test_bad_inputs_raise() -> None:
    maps = np.zeros((1, 2, 2, 24, 24), np.float32)
    pixels = np.zeros((1, 2, 5, 2), np.int32)
    visible = np.ones((1, 2, 5), bool)
    pixels[0, 1, 3] = (336, 0)
    with pytest.raises(ValueError, match="pixels"):
        backproject(maps, pixels, visible)
    visible[0, 1, 3] = False  # an invisible point's pixel is never read
    assert backproject(maps, pixels, visible).shape == (1, 5, 3)
    with pytest.raises(ValueError, match="maps"):
        backproject(maps[:, :, :1], pixels, visible)
    with pytest.raises(ValueError, match="visible"):
        backproject(maps, pixels, visible[:, :1])
    with pytest.raises(ValueError, match="fusion_weight"):
        backproject(maps, pixels, visible, fusion_weight=1.5)


def test_import_without_torch() -> None:
    res = run_blocked("""
        import numpy as np
        from align3d_rt.kernels import backproject
        out = backproject(np.ones((1, 1, 2, 4, 4), np.float32), np.zeros((1, 1, 3, 2), np.int32),
                          np.ones((1, 1, 3), bool), image_size=8)
        assert np.allclose(out, 1.0), out
        assert 'torch' not in sys.modules
        print('ok')
    """, "torch")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
