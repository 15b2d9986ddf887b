"""``align3d-rt import-checkpoint``: synthetic checkpoints in the reference layouts (built here from the layout's
description, random values, the tiny CLIP's widths) import, export and score; bad files fail on one line."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference_formulas import np_reference

from align3d_rt.artifacts import run_dir as rd
from align3d_rt.cli import main

TINY_TEXT_WIDTH, TINY_EMBED, N_CTX, DEPTH, T_N_CTX = 128, 128, 12, 9, 4


def reference_prompt_sd(gen: torch.Generator, width: int = TINY_TEXT_WIDTH, n_ctx: int = N_CTX,
                        depth: int = DEPTH, t_n_ctx: int = T_N_CTX) -> dict[str, torch.Tensor]:
    """An AnomalyCLIP prompt-learner state dict: contexts, deep prompts, unused projections and buffers."""
    import open_clip

    sd: dict[str, torch.Tensor] = {
        "ctx_pos": torch.randn(1, 1, n_ctx, width, generator=gen) * 0.5,
        "ctx_neg": torch.randn(1, 1, n_ctx, width, generator=gen) * 0.5,
    }
    for i in range(depth - 1):
        sd[f"compound_prompts_text.{i}"] = torch.randn(t_n_ctx, width, generator=gen) * 0.5
        sd[f"compound_prompt_projections.{i}.weight"] = torch.randn(896, width, generator=gen)
        sd[f"compound_prompt_projections.{i}.bias"] = torch.randn(896, generator=gen)
    prefix = " ".join(["X"] * n_ctx)
    for state, text in (("pos", f"{prefix} object."), ("neg", f"{prefix} damaged object.")):
        tokens = open_clip.tokenize([text]).to(torch.int32)
        sd[f"tokenized_prompts_{state}"] = tokens.reshape(1, 1, -1)
        sd[f"token_prefix_{state}"] = torch.randn(1, 1, 1, width, generator=gen)
        sd[f"token_suffix_{state}"] = torch.randn(1, 1, tokens.shape[1] - 1 - n_ctx, width, generator=gen)
    return sd


def reference_aligner_sd(gen: torch.Generator, dim: int = TINY_EMBED) -> dict[str, torch.Tensor]:
    sd = {}
    for mlp in ("global_mlp", "local_mlp"):
        for layer in ("input", "projection", "output"):
            sd[f"{mlp}.{layer}.weight"] = torch.randn(dim, dim, generator=gen) / dim ** 0.5
            sd[f"{mlp}.{layer}.bias"] = torch.randn(dim, generator=gen) * 0.1
    return sd


def write_pair(folder: Path, seed: int = 0, **prompt_kw: int) -> tuple[Path, Path, dict, dict]:
    gen = torch.Generator().manual_seed(seed)
    rgb = {"rgb_prompt_learner": reference_prompt_sd(gen, **prompt_kw), "aligner": reference_aligner_sd(gen)}
    rendering = {"prompt_learner": reference_prompt_sd(gen, **prompt_kw)}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(rgb, folder / "epoch_15_rgb.pth")
    torch.save(rendering, folder / "epoch_15_rendering.pth")
    return folder / "epoch_15_rgb.pth", folder / "epoch_15_rendering.pth", rgb, rendering


def _import(args: list[str]) -> int:
    return main(["import-checkpoint", *args, "--clip", "align3d-tiny", "--clip-weights", "random",
                 "--dataset", "synthetic", "--category", "dome"])


def _reference_aligner_forward(sd: dict, mlp: str, x: torch.Tensor) -> torch.Tensor:
    """The reference's aligner use, written from its description: normalise, Linear-GELU-Linear-GELU-Linear,
    normalise."""
    h = F.normalize(x, dim=-1)
    h = F.gelu(F.linear(h, sd[f"{mlp}.input.weight"], sd[f"{mlp}.input.bias"]))
    h = F.gelu(F.linear(h, sd[f"{mlp}.projection.weight"], sd[f"{mlp}.projection.bias"]))
    h = F.linear(h, sd[f"{mlp}.output.weight"], sd[f"{mlp}.output.bias"])
    return F.normalize(h, dim=-1)


def test_import_pair_maps_every_tensor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb_path, rend_path, rgb, rendering = write_pair(tmp_path / "ckpt")
    run = tmp_path / "run"
    assert _import([str(rgb_path), "--out", str(run)]) == 0  # the partner is found by name
    assert "align3d-ad pair" in capsys.readouterr().err
    cfg = json.loads((run / rd.CONFIG).read_text())
    sources = cfg["import"]["sources"]
    assert sources["aligned"]["sha256"] == hashlib.sha256(rgb_path.read_bytes()).hexdigest()
    assert sources["render"]["sha256"] == hashlib.sha256(rend_path.read_bytes()).hexdigest()
    assert cfg["fusion_weight"] == 0.5 and cfg["import"]["prompt_shapes"]["render"] == {
        "n_ctx": N_CTX, "n_deep": DEPTH - 1, "deep_len": T_N_CTX, "width": TINY_TEXT_WIDTH}

    for file, sd in ((rd.PROMPTS_ALIGNED, rgb["rgb_prompt_learner"]), (rd.PROMPTS_RENDER, rendering["prompt_learner"])):
        ours = rd.load_tensors(run / file)
        np.testing.assert_array_equal(ours["ctx"][0], sd["ctx_pos"][0, 0].numpy())   # normal = pos
        np.testing.assert_array_equal(ours["ctx"][1], sd["ctx_neg"][0, 0].numpy())   # abnormal = neg
        for i in range(DEPTH - 1):
            np.testing.assert_array_equal(ours["deep_ctx"][i], sd[f"compound_prompts_text.{i}"].numpy())

    art = rd.load_run(run)
    from align3d_rt.model.graph import aligner_from_state

    aligner = aligner_from_state(TINY_EMBED, art.aligner_state)
    gen = torch.Generator().manual_seed(3)  # seeded: the same features in any test order
    g, p = torch.randn(3, TINY_EMBED, generator=gen) * 5, torch.randn(3, 7, TINY_EMBED, generator=gen) * 5
    with torch.no_grad():
        ga, pa = aligner(g, p)
    torch.testing.assert_close(ga, _reference_aligner_forward(rgb["aligner"], "global_mlp", g), rtol=0, atol=1e-6)
    torch.testing.assert_close(pa, _reference_aligner_forward(rgb["aligner"], "local_mlp", p), rtol=0, atol=1e-6)

    # text: branch 0 = rendering checkpoint, branch 1 = rgb checkpoint; unit length; the two differ
    assert art.text.shape == (2, 2, TINY_EMBED)
    np.testing.assert_allclose(np.linalg.norm(art.text, axis=-1), 1.0, atol=1e-5)
    assert np.abs(art.text[0] - art.text[1]).max() > 1e-3 and np.abs(art.text[0, 0] - art.text[0, 1]).max() > 1e-3


def test_imported_pair_exports_and_scores(tmp_path: Path) -> None:
    """Import -> export (bundle) -> infer in both scoring modes; reference mode equals the independent
    formulas on the same tensors (the torch detector's own render/aligned channels), to 1e-6."""
    from infer_eval_support import bump_cloud

    from align3d_rt.runtime.detector import Detector
    from align3d_rt.scoring_reference import ReferenceSettings

    rgb_path, _, _, _ = write_pair(tmp_path / "ckpt", seed=1)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert _import([str(rgb_path), "--out", str(run)]) == 0
    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 0
    cloud = bump_cloud(40, seed=2)  # 1600 = 40^2 points
    np.save(tmp_path / "c.npy", cloud.points)
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", str(bundle), "--out", str(tmp_path / "ref"),
               "--no-ply", "--no-png", "--scoring", "reference"])
    assert rc == 0
    bundle_score = json.loads((tmp_path / "ref" / "scores.json").read_text())["samples"]["c"]["object_score"]

    det = Detector.from_run(run, backend="torch", device="cpu")
    with det:
        ours = det.score([cloud], keep_render=False)[0]
        det.reference_scoring = ReferenceSettings()
        ref = det.score([cloud], keep_render=False)[0]
    want = np_reference(ours.point_scores[:, 0], ours.point_scores[:, 1], ours.global_probs, np.arange(1600),
                        (40, 40), 0.5, 0.5, mvtec=False)
    assert abs(ref.object_score - want["object"]) <= 1e-6
    np.testing.assert_allclose(ref.fused, want["points"], rtol=0, atol=1e-6)
    assert abs(ref.object_score - ours.object_score) > 1e-3  # the two modes really differ
    # the bundle (ONNX Runtime) scores the same cloud within the runtime's usual tolerance of the torch run
    assert np.isfinite(bundle_score) and abs(bundle_score - ref.object_score) < 1e-3


def test_pointad_single_prompt_is_the_rendering_branch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from infer_eval_support import bump_cloud

    from align3d_rt.runtime.detector import Detector

    gen = torch.Generator().manual_seed(5)
    torch.save({"prompt_learner": reference_prompt_sd(gen)}, tmp_path / "epoch_15.pth")
    run = tmp_path / "run"
    assert _import([str(tmp_path / "epoch_15.pth"), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "pointad single prompt" in err and "aligned branch is off" in err
    cfg = json.loads((run / rd.CONFIG).read_text())
    assert cfg["fusion_weight"] == 0.0 and cfg["import"]["aligner_source"] is None
    det = Detector.from_run(run, backend="torch", device="cpu")
    with det:
        res = det.score([bump_cloud(20, seed=0)], keep_render=False)[0]
    np.testing.assert_array_equal(res.point_scores[:, 2], res.point_scores[:, 0])  # fused = rendering branch
    np.testing.assert_allclose(res.point_scores[:, 1], 0.5, atol=1e-6)           # the switched-off branch
    assert _import([str(tmp_path / "epoch_15.pth"), "--out", str(tmp_path / "r2"), "--fusion-weight", "0.5"]) == 2


@pytest.mark.parametrize("case, problem", [
    ("width", "prompt_learner.ctx_pos width 768 does not match the CLIP text width 128"),
    ("depth", "has 11 deep prompts but the CLIP text tower has only 9 blocks"),
    ("aligner", "aligner.local_mlp.output.weight has shape (64, 128), expected (128, 128)"),
    ("no_partner", "Align3D-AD rgb checkpoint without its rendering partner"),
    ("pickle", "not a tensor-only torch checkpoint"),
    ("tokens", "prompt tokens differ from ours"),
    ("fp16_range", "compound_prompts_text: values beyond +-65504"),
    ("nan", "ctx_pos/ctx_neg: holds non-finite values"),
])
def test_bad_checkpoints_fail_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
                                          problem: str) -> None:
    folder = tmp_path / "ckpt"
    if case == "width":
        rgb_path, _, _, _ = write_pair(folder, width=768)
    elif case == "depth":
        rgb_path, _, _, _ = write_pair(folder, depth=12)
    else:
        rgb_path, rend_path, rgb, rendering = write_pair(folder)
        if case == "aligner":
            rgb["aligner"]["local_mlp.output.weight"] = torch.zeros(64, 128)
            torch.save(rgb, rgb_path)
        elif case == "no_partner":
            rend_path.unlink()
        elif case == "pickle":
            torch.save({"rgb_prompt_learner": {"ctx_pos": Path("/not/a/tensor")}}, rgb_path)  # not tensors only
        elif case == "tokens":
            rgb["rgb_prompt_learner"]["tokenized_prompts_neg"][0, 0, 3] += 1
            torch.save(rgb, rgb_path)
        elif case == "fp16_range":  # the reference's .half() would make it inf
            rgb["rgb_prompt_learner"]["compound_prompts_text.3"][0, 0] = 70000.0
            torch.save(rgb, rgb_path)
        elif case == "nan":
            rgb["rgb_prompt_learner"]["ctx_neg"][0, 0, 2, 5] = float("nan")
            torch.save(rgb, rgb_path)
    run = tmp_path / "run"
    assert _import([str(rgb_path), "--out", str(run)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0] and str(folder) in lines[0], lines
    assert "weights_only=False" not in lines[0]
    assert not run.exists() and not list(tmp_path.glob(".run.*"))  # nothing partial left


def test_garbage_file_is_refused_without_suggesting_the_unsafe_loader(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "epoch_1.pth"
    bad.write_bytes(b"\x80\x02garbage" * 20)
    assert _import([str(bad), "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{bad}: not a tensor-only torch checkpoint" in lines[0]
    assert "weights_only=False" not in lines[0] and "\x1b" not in lines[0] and "trust" not in lines[0]


def test_unwritable_out_and_bad_weight_fail_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb_path, _, _, _ = write_pair(tmp_path / "ckpt")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _import([str(rgb_path), "--out", str(blocker / "run")]) == 2
    assert _import([str(rgb_path), "--out", str(tmp_path / "run"), "--fusion-weight", "nan"]) == 2  # by its type
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "cannot create the run directory" in lines[0]
    assert "argument --fusion-weight: must be a number in [0, 1], got 'nan'" in lines[1]
    assert blocker.read_text() == "x" and not (tmp_path / "run").exists()


def _reference_text(clip_model: torch.nn.Module, sd: dict, round_deep: bool = True) -> np.ndarray:
    """(2,D) [normal, abnormal] text embeddings as the reference computes them, written from its description:
    prompt = [SOS] + ctx + rest of "X.. object." / "X.. damaged object." token embeddings, + positions; in text
    blocks i = 1..K the hidden states at positions 1..deep_len are replaced by compound_prompts_text.{i-1}
    after ``.half()`` (rounded to fp16; the cat promotes it back); pre-LN residual blocks with the causal
    mask; ln_final; EOT token @ text_projection; L2 normalised. float32 otherwise."""
    import open_clip

    n_ctx = sd["ctx_pos"].shape[2]
    deep = [sd[f"compound_prompts_text.{i}"] for i in range(DEPTH - 1)]
    outs = []
    for state, ctx in (("object.", sd["ctx_pos"][0, 0]), ("damaged object.", sd["ctx_neg"][0, 0])):
        tokens = open_clip.tokenize([" ".join(["X"] * n_ctx) + " " + state])
        emb = clip_model.token_embedding(tokens)[0]
        x = torch.cat([emb[:1], ctx.float(), emb[1 + n_ctx:]]) + clip_model.positional_embedding
        x = x[None]
        mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1)
        for i, blk in enumerate(clip_model.transformer.resblocks):
            if 1 <= i <= len(deep):
                d = deep[i - 1].half() if round_deep else deep[i - 1]
                x = torch.cat([x[:, :1], d[None], x[:, 1 + d.shape[0]:]], dim=1)  # fp16 promoted to fp32
            h = blk.ln_1(x)
            attn = blk.attn(h, h, h, need_weights=False, attn_mask=mask)[0] if blk.attn.batch_first else \
                blk.attn(h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), need_weights=False,
                         attn_mask=mask)[0].transpose(0, 1)
            x = x + attn
            x = x + blk.mlp(blk.ln_2(x))
        x = clip_model.ln_final(x)[0, int(tokens.argmax(-1))] @ clip_model.text_projection
        outs.append(F.normalize(x, dim=-1))
    return torch.stack(outs).detach().numpy()


def test_imported_text_equals_the_references_fp16_deep_prompt_computation(tmp_path: Path) -> None:
    """The reference rounds the deep prompts to fp16 (`.half()`) before the text blocks: imported text
    embeddings equal that computation (built here, independently of PromptLearner) to 1e-6."""
    from align3d_rt.model.clip_backbone import load_clip

    rgb_path, _, rgb, rendering = write_pair(tmp_path / "ckpt", seed=4)
    assert _import([str(rgb_path), "--out", str(tmp_path / "run")]) == 0
    text = rd.load_run(tmp_path / "run").text
    clip_model, _ = load_clip("align3d-tiny", "random")
    with torch.no_grad():
        for branch, sd in ((0, rendering["prompt_learner"]), (1, rgb["rgb_prompt_learner"])):
            want = _reference_text(clip_model, sd)
            np.testing.assert_allclose(text[branch], want, rtol=0, atol=1e-6)
            unrounded = _reference_text(clip_model, sd, round_deep=False)
            assert np.abs(unrounded - want).max() > 5e-6, "the fp16 rounding must be visible at this tolerance"
