"""CLIP backbone loading: the tiny model, local weight files, and fast offline failures."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from align3d_rt.errors import WeightsError
from align3d_rt.model import clip_backbone
from align3d_rt.model.clip_backbone import ClipInfo, dpam_start_for, load_clip
from align3d_rt.model.weights_identity import tensor_digest


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, ClipInfo]:
    return load_clip("align3d-tiny")


def test_tiny_info_and_frozen(tiny: tuple[torch.nn.Module, ClipInfo]) -> None:
    model, info = tiny
    assert info.name == "align3d-tiny" and info.weights_id == "random:0"
    assert (info.image_size, info.grid_size, info.embed_dim) == (336, 24, 128)
    assert info.dpam_start == dpam_start_for(len(model.visual.transformer.resblocks))
    assert info.image_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert len(model.transformer.resblocks) >= 9  # deep prompts use text blocks 1..8


def test_dpam_start_matches_reference() -> None:
    assert dpam_start_for(24) == 5  # blocks 6..24 (1-indexed)
    assert dpam_start_for(4) == 1 and dpam_start_for(12) == 2


def test_tiny_is_seeded_and_deterministic(tiny: tuple[torch.nn.Module, ClipInfo]) -> None:
    model, _ = tiny
    again, _ = load_clip("align3d-tiny", seed=0)
    other, info1 = load_clip("align3d-tiny", seed=1)
    assert info1.weights_id == "random:1"
    w0 = model.visual.conv1.weight
    assert torch.equal(w0, again.visual.conv1.weight)
    assert not torch.equal(w0, other.visual.conv1.weight)
    torch.manual_seed(123)
    x = torch.rand(1)
    torch.manual_seed(123)
    load_clip("align3d-tiny", seed=5)
    assert torch.equal(torch.rand(1), x), "load_clip must not disturb the global RNG"


def test_unknown_name_is_an_error() -> None:
    with pytest.raises(WeightsError, match="unknown CLIP model"):
        load_clip("no-such-clip")


def test_local_safetensors_and_pt_roundtrip(tiny: tuple[torch.nn.Module, ClipInfo], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model, _ = tiny
    other, _ = load_clip("align3d-tiny", seed=7)
    state = {k: v.contiguous() for k, v in other.state_dict().items()}
    st = tmp_path / "w.safetensors"
    save_file(state, str(st))
    loaded, info = load_clip("align3d-tiny", weights=str(st))
    assert info.weights_id == tensor_digest(loaded.state_dict()) == tensor_digest(other.state_dict())
    assert info.weights_path == str(st.resolve())
    assert torch.equal(loaded.visual.proj, other.visual.proj)
    assert not torch.equal(loaded.visual.proj, model.visual.proj)
    pt = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, pt)
    loaded_pt, _ = load_clip("align3d-tiny", weights=str(pt))
    assert torch.equal(loaded_pt.token_embedding.weight, other.token_embedding.weight)


def test_torchscript_archive_like_openai_release(tiny: tuple[torch.nn.Module, ClipInfo], tmp_path: Path) -> None:
    """OpenAI ships TorchScript .pt files; torch.load(weights_only=True) refuses them, so they go through jit.load."""
    import warnings

    other, _ = load_clip("align3d-tiny", seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(other)
        path = tmp_path / "ViT-tiny.pt"
        torch.jit.save(scripted, str(path))
    loaded, info = load_clip("align3d-tiny", weights=str(path))
    assert info.weights_id == tensor_digest(loaded.state_dict()) and info.weights_id.startswith("tensors-sha256:")
    assert torch.equal(loaded.visual.proj, other.visual.proj)
    assert not torch.equal(loaded.visual.proj, tiny[0].visual.proj)


def test_missing_corrupt_and_mismatched_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match="nope.safetensors: CLIP weights file not found"):
        load_clip("align3d-tiny", weights=str(missing))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="bad.safetensors: cannot read"):
        load_clip("align3d-tiny", weights=str(bad))
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    with pytest.raises(WeightsError, match="wrong.pt: weights do not fit"):
        load_clip("align3d-tiny", weights=str(wrong))


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"x": Path("/")}, evil)  # an arbitrary Python object: weights_only loading rejects it
    with pytest.raises(WeightsError, match="evil.pt: cannot read"):
        load_clip("align3d-tiny", weights=str(evil))


def _empty_caches(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_openai_weights_offline_fail_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import open_clip

    _empty_caches(monkeypatch, tmp_path)

    def no_build(*a: object, **k: object) -> None:
        raise AssertionError("the model must not be built before the weights are found")

    monkeypatch.setattr(open_clip, "create_model", no_build)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        load_clip("ViT-L-14-336")
    assert time.perf_counter() - t0 < 20.0  # no hub retries (open_clip would wait about 45 s); not a speed target
    msg = str(err.value)
    assert "\n" not in msg
    assert "timm/vit_large_patch14_clip_336.openai" in msg and "open_clip_model.safetensors" in msg
    assert str(tmp_path / "hf" / "hub") in msg
    assert "ViT-L-14-336px.pt" in msg  # open_clip's legacy download cache
    assert "--clip-weights PATH" in msg and "pretrained='openai'" in msg


def test_openai_weights_found_in_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A file in the Hugging Face cache layout is found without any network call; the arch is QuickGELU."""
    _empty_caches(monkeypatch, tmp_path)
    repo = tmp_path / "hf" / "hub" / "models--timm--vit_large_patch14_clip_336.openai"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    target = snap / "open_clip_model.safetensors"
    target.write_bytes(b"not really weights")
    arch = clip_backbone._arch_for("ViT-L-14-336")
    assert arch == "ViT-L-14-336-quickgelu"
    found = [p for _, p in clip_backbone.openai_weight_candidates(arch) if p is not None]
    assert found == [target]
    with pytest.raises(WeightsError, match="open_clip_model.safetensors: cannot read"):
        load_clip("ViT-L-14-336")  # fails on reading, before the 428M-parameter model is built


@pytest.mark.heavy
def test_vit_l_14_336_random_dpam_forward() -> None:
    from align3d_rt.model.dpam import DPAMVisual

    model, info = load_clip("ViT-L-14-336", weights="random")
    assert info.arch == "ViT-L-14-336-quickgelu" and info.weights_id == "random:0"
    assert (info.embed_dim, info.grid_size, info.dpam_start) == (768, 24, 5)
    assert len(model.visual.transformer.resblocks) == 24 and model.visual.transformer.width == 1024
    visual = DPAMVisual(model.visual, info.dpam_start)
    with torch.inference_mode():
        g, patches = visual(torch.randn(1, 3, 336, 336))
    assert g.shape == (1, 768) and patches.shape == (1, 577, 768)
    assert torch.isfinite(g).all() and torch.isfinite(patches).all()
