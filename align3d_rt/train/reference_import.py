"""Import released reference checkpoints (Align3D-AD, PointAD) into an align3d_rt run directory.

Layouts (read from the public reference code; tensors only, loaded with ``weights_only=True``):

- Align3D-AD pair: ``epoch_N_rgb.pth`` = {"rgb_prompt_learner": SD, "aligner": SD} (the prompt learner
  of the RGB-aligned branch and the aligner) and ``epoch_N_rendering.pth`` = {"prompt_learner": SD}
  (the rendering branch).
- PointAD: ``epoch_N.pth`` = {"prompt_learner": SD}; one prompt learner on rendered views and no
  aligner. It becomes the rendering branch; the aligned branch is switched off (zero aligner, fusion
  weight 0), so the fused scores are the rendering branch's.

A prompt learner SD (AnomalyCLIP's) holds ``ctx_pos``/``ctx_neg`` (1, 1, n_ctx, W) = the normal /
abnormal context vectors, ``compound_prompts_text.0..K-1`` (deep_len, W) = deep prompts of text blocks
1..K, and parts we rebuild or do not use: ``compound_prompt_projections.*`` (unused by the reference's
forward), buffers ``token_prefix_*``/``token_suffix_*`` (token embeddings of the prompt text) and
``tokenized_prompts_*`` (its tokens, checked against ours). W is the CLIP text width; for
ViT-L-14-336, n_ctx 12, K 8, deep_len 4, W 768 = our PromptLearner defaults exactly. An aligner SD
holds ``{global_mlp,local_mlp}.{input,projection,output}.{weight,bias}``, D x D (D = CLIP embedding
size; the reference's hidden width (D + D) // 2 is D), mapped to our ``{global_mlp,patch_mlp}.{0,2,4}``.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts import run_dir as rd
from align3d_rt.errors import InputError, RunDirError
from align3d_rt.io_utils import sha256_file

FP16_MAX = float(np.finfo(np.float16).max)  # the reference rounds deep prompts to fp16: beyond this they are inf

__all__ = ["ReferenceFile", "PromptShapes", "read_reference_file", "partner_path", "prompt_tensors",
           "aligner_tensors", "import_reference_checkpoints", "ALIGNER_KEY_MAP"]

RGB_KEY, RENDERING_KEY, ALIGNER_KEY = "rgb_prompt_learner", "prompt_learner", "aligner"
# reference aligner layer -> our nn.Sequential index; reference MLP name -> ours
ALIGNER_LAYER_MAP = {"input": "0", "projection": "2", "output": "4"}
ALIGNER_MLP_MAP = {"global_mlp": "global_mlp", "local_mlp": "patch_mlp"}
ALIGNER_KEY_MAP = {f"{ref_mlp}.{ref_layer}.{p}": f"{our_mlp}.{idx}.{p}"
                   for ref_mlp, our_mlp in ALIGNER_MLP_MAP.items()
                   for ref_layer, idx in ALIGNER_LAYER_MAP.items() for p in ("weight", "bias")}
IGNORED_PREFIXES = ("compound_prompt_projections.", "token_prefix_", "token_suffix_", "tokenized_prompts_")


@dataclass
class ReferenceFile:
    """One loaded checkpoint file: its top-level dict of state dicts and its sha256."""

    path: Path
    sha256: str
    content: dict[str, dict[str, Any]]

    @property
    def kind(self) -> str:
        """'rgb' (Align3D-AD rgb file), 'rendering' (Align3D-AD rendering or PointAD single file)."""
        return "rgb" if RGB_KEY in self.content else "rendering"


@dataclass(frozen=True)
class PromptShapes:
    """The prompt-learner sizes a checkpoint holds (checked against the CLIP's text tower)."""

    n_ctx: int
    n_deep: int
    deep_len: int
    width: int


@dataclass
class ImportPlan:
    """What import_reference_checkpoints found: the files per branch and the layout's name."""

    layout: str                      # 'align3d-ad pair' | 'pointad single prompt'
    rendering: ReferenceFile
    rgb: ReferenceFile | None = None
    notes: list[str] = field(default_factory=list)


def _fail(path: Path, problem: str) -> InputError:
    return InputError(f"{path}: {problem}")


def read_reference_file(path: str | Path) -> ReferenceFile:
    """torch.load(weights_only=True) one checkpoint; it must be a dict of state dicts (tensors only)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise _fail(p, "checkpoint file not found")
    try:
        content = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text suggests the unsafe loader: never repeat it
        raise _fail(p, "not a tensor-only torch checkpoint (the safe loader refuses it: it holds other Python "
                       "objects or is damaged); only tensor state dicts are imported") from None
    except Exception as err:  # noqa: BLE001 - truncated/garbled zip or pickle streams raise many types
        detail = "".join(ch for ch in (str(err).strip().splitlines() or [""])[0] if ch.isprintable())[:160]
        raise _fail(p, f"not a tensor-only torch checkpoint ({type(err).__name__}: {detail or 'unreadable'})") from None
    if isinstance(content, dict) and not all(isinstance(k, str) for k in content):
        bad = next(k for k in content if not isinstance(k, str))
        raise _fail(p, f"entry key {bad!r} is not a string; not an Align3D-AD/PointAD checkpoint")
    if not isinstance(content, dict) or not any(k in content for k in (RGB_KEY, RENDERING_KEY)):
        keys = sorted(content)[:5] if isinstance(content, dict) else type(content).__name__
        raise _fail(p, f"no '{RGB_KEY}' or '{RENDERING_KEY}' entry (found {keys}); not an Align3D-AD/PointAD "
                       f"checkpoint")
    for key, sd in content.items():
        if not isinstance(sd, dict):
            raise _fail(p, f"entry '{key}' is not a state dict")
        for name, value in sd.items():
            if not isinstance(name, str):
                raise _fail(p, f"{key}: state-dict key {name!r} is not a string")
            if not isinstance(value, torch.Tensor):
                raise _fail(p, f"{key}.{name}: a {type(value).__name__}, not a tensor; only tensor state dicts "
                               f"are imported")
    return ReferenceFile(path=p, sha256=sha256_file(p), content=content)


def partner_path(path: Path) -> Path | None:
    """The other file of an Align3D-AD pair by the reference's naming (…_rgb.pth <-> …_rendering.pth)."""
    name = path.name
    for own, other in (("_rgb", "_rendering"), ("_rendering", "_rgb")):
        stem, ext = os.path.splitext(name)
        if stem.endswith(own):
            return path.with_name(stem[: -len(own)] + other + ext)
    return None


_CORRUPT = "the checkpoint is damaged; import an intact copy"


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().float().numpy() if hasattr(tensor, "detach") else np.asarray(tensor, np.float32)


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in tensor.shape)


def prompt_tensors(sd: dict[str, Any], path: Path, entry: str, width: int, text_layers: int,
                   context_length: int) -> tuple[dict[str, np.ndarray], PromptShapes]:
    """Our PromptLearner tensors {'ctx': (2,n_ctx,W), 'deep_ctx': (K,deep_len,W)} from a reference SD.

    normal = ctx_pos, abnormal = ctx_neg. Every shape is checked against the CLIP's text width and
    depth; an error names the file and the key."""
    where = f"{entry}."
    for key in ("ctx_pos", "ctx_neg"):
        if key not in sd:
            raise _fail(path, f"{where}{key} missing (not an AnomalyCLIP prompt learner)")
    pos, neg = sd["ctx_pos"], sd["ctx_neg"]
    if len(_shape(pos)) != 4 or _shape(pos)[:2] != (1, 1):
        raise _fail(path, f"{where}ctx_pos has shape {_shape(pos)}, expected (1, 1, n_ctx, W): one class, one "
                          f"normal state")
    n_ctx = _shape(pos)[2]
    if _shape(pos)[3] != width:
        raise _fail(path, f"{where}ctx_pos width {_shape(pos)[3]} does not match the CLIP text width {width}")
    if _shape(neg) != _shape(pos):
        raise _fail(path, f"{where}ctx_neg has shape {_shape(neg)}, expected {_shape(pos)} like ctx_pos")
    deep_keys = [k for k in sd if k.startswith("compound_prompts_text.")]
    if not all(k.split(".", 1)[1].isdigit() and k.split(".", 1)[1].isascii() for k in deep_keys):
        bad = next(k for k in deep_keys if not (k.split(".", 1)[1].isdigit() and k.split(".", 1)[1].isascii()))
        raise _fail(path, f"{where}{bad}: malformed key (expected compound_prompts_text.<number>)")
    deep_keys.sort(key=lambda k: int(k.split(".", 1)[1]))
    if [k.split(".", 1)[1] for k in deep_keys] != [str(i) for i in range(len(deep_keys))]:
        raise _fail(path, f"{where}compound_prompts_text.* are not numbered 0..{len(deep_keys) - 1}")
    deep_len = _shape(sd[deep_keys[0]])[0] if deep_keys else 0
    for k in deep_keys:
        if _shape(sd[k]) != (deep_len, width):
            raise _fail(path, f"{where}{k} has shape {_shape(sd[k])}, expected ({deep_len}, {width})")
    if len(deep_keys) > text_layers - 1:
        raise _fail(path, f"{where}compound_prompts_text has {len(deep_keys)} deep prompts but the CLIP text tower "
                          f"has only {text_layers} blocks (at most {text_layers - 1})")
    if 1 + max(n_ctx, deep_len) >= context_length:
        raise _fail(path, f"{where}ctx_pos: {n_ctx} context vectors do not fit the text context {context_length}")
    known = {"ctx_pos", "ctx_neg", *deep_keys}
    unknown = sorted(k for k in sd if k not in known and not k.startswith(IGNORED_PREFIXES))
    if unknown:
        raise _fail(path, f"{where}{unknown[0]}: unexpected key (not part of AnomalyCLIP's prompt learner)")
    ctx = np.concatenate([_array(pos)[0, 0][None], _array(neg)[0, 0][None]], axis=0).astype(np.float32)
    deep = (np.stack([_array(sd[k]) for k in deep_keys]) if deep_keys
            else np.zeros((0, 4, width), np.float32)).astype(np.float32)
    for name, values in (("ctx_pos/ctx_neg", ctx), ("compound_prompts_text", deep)):
        if not np.isfinite(values).all():
            raise _fail(path, f"{where}{name}: holds non-finite values")
    if deep.size and float(np.abs(deep).max()) > FP16_MAX:
        raise _fail(path, f"{where}compound_prompts_text: values beyond +-{FP16_MAX:g}; the reference rounds deep "
                          f"prompts to fp16, where they would be infinite")
    return {"ctx": ctx, "deep_ctx": deep}, PromptShapes(n_ctx, len(deep_keys), deep_len, width)


def check_prompt_tokens(sd: dict[str, Any], path: Path, entry: str, tokens: np.ndarray) -> None:
    """The checkpoint's ``tokenized_prompts_pos/neg`` (if stored) must be our prompts' tokens."""
    for i, key in enumerate(("tokenized_prompts_pos", "tokenized_prompts_neg")):
        if key not in sd:
            continue
        theirs = np.asarray(sd[key].cpu().numpy() if hasattr(sd[key], "cpu") else sd[key]).reshape(-1)
        if theirs.shape != tokens[i].shape or not np.array_equal(theirs.astype(np.int64), tokens[i].astype(np.int64)):
            raise _fail(path, f"{entry}.{key}: the checkpoint's prompt tokens differ from ours "
                              f"('X*n_ctx object.' / 'X*n_ctx damaged object.')")


def aligner_tensors(sd: dict[str, Any], path: Path, dim: int) -> dict[str, np.ndarray]:
    """Our Aligner state dict from the reference's (global_mlp/local_mlp; input/projection/output)."""
    missing = sorted(set(ALIGNER_KEY_MAP) - set(sd))
    if missing:
        raise _fail(path, f"aligner.{missing[0]} missing (expected {{global_mlp,local_mlp}}."
                          f"{{input,projection,output}}.{{weight,bias}})")
    extra = sorted(set(sd) - set(ALIGNER_KEY_MAP))
    if extra:
        raise _fail(path, f"aligner.{extra[0]}: unexpected key")
    out: dict[str, np.ndarray] = {}
    for ref_key, our_key in ALIGNER_KEY_MAP.items():
        want = (dim, dim) if ref_key.endswith("weight") else (dim,)
        if _shape(sd[ref_key]) != want:
            raise _fail(path, f"aligner.{ref_key} has shape {_shape(sd[ref_key])}, expected {want} "
                              f"(CLIP embedding size {dim})")
        out[our_key] = _array(sd[ref_key])
    return out


def plan_import(paths: list[Path]) -> ImportPlan:
    """Load the given file(s) (plus an Align3D-AD partner found by name) and decide the layout."""
    paths = list(dict.fromkeys(Path(p) for p in paths))
    if len(paths) == 1:
        partner = partner_path(paths[0])
        if partner is not None and partner.is_file():
            paths.append(partner)
    if len(paths) > 2:
        raise InputError(f"{paths[2]}: at most two checkpoint files (an Align3D-AD _rgb/_rendering pair)")
    files = [read_reference_file(p) for p in paths]
    rgb = [f for f in files if f.kind == "rgb"]
    rendering = [f for f in files if f.kind == "rendering"]
    if len(rgb) > 1 or len(rendering) > 1:
        raise InputError(f"{files[1].path}: both files hold the same branch ('{files[1].kind}'); give one "
                         f"_rgb.pth and one _rendering.pth")
    if rgb and not rendering:
        raise InputError(f"{rgb[0].path}: Align3D-AD rgb checkpoint without its rendering partner "
                         f"({partner_path(rgb[0].path) or '..._rendering.pth'}); give both files")
    if rgb:
        if ALIGNER_KEY not in rgb[0].content:
            raise InputError(f"{rgb[0].path}: no 'aligner' entry; an Align3D-AD rgb checkpoint holds the aligner")
        return ImportPlan("align3d-ad pair", rendering=rendering[0], rgb=rgb[0])
    return ImportPlan("pointad single prompt", rendering=rendering[0], notes=[
        "single prompt learner (PointAD layout): imported as the rendering branch; the aligned branch is off "
        "(zero aligner, fusion weight 0), so fused scores are the rendering branch's"])


def _text_of(clip_model: Any, tensors: dict[str, np.ndarray], shapes: PromptShapes, plan_path: Path,
             entry: str, sd: dict[str, Any]) -> np.ndarray:
    """(2,D) normalised [normal, abnormal] text embeddings of one imported prompt learner."""
    import torch

    from align3d_rt.model.prompts import PromptLearner

    learner = PromptLearner(clip_model, n_ctx=shapes.n_ctx, deep_depth=shapes.n_deep + 1,
                            deep_len=shapes.deep_len if shapes.n_deep else 4)
    check_prompt_tokens(sd, plan_path, entry, learner.tokens.numpy())
    with torch.no_grad():
        learner.ctx.copy_(torch.from_numpy(tensors["ctx"]))
        if shapes.n_deep:
            learner.deep_ctx.copy_(torch.from_numpy(tensors["deep_ctx"]))
        return learner().float().numpy().astype(np.float32)


def import_reference_checkpoints(paths: list[str | Path], out: str | Path, clip: str = "ViT-L-14-336",
                                 clip_weights: str | None = None, dataset: str = "mvtec3d", category: str = "",
                                 fusion_weight: float | None = None, seed: int = 0) -> tuple[Path, ImportPlan]:
    """Import an Align3D-AD pair or a PointAD file into a new run directory ``out`` (written whole or not at all)."""
    from align3d_rt import __version__
    from align3d_rt.model.clip_backbone import load_clip
    from align3d_rt.model.prompts import FrozenTextTower
    from align3d_rt.render.views import settings_for
    from align3d_rt.versions import library_versions

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"{out}: exists and is not empty; choose a new --out")
    if fusion_weight is not None and not 0.0 <= float(fusion_weight) <= 1.0:
        raise InputError(f"--fusion-weight {fusion_weight}: must be in [0, 1]")
    plan = plan_import([Path(p) for p in paths])
    model, info = load_clip(clip, clip_weights, seed=seed)
    tower = FrozenTextTower(model)
    width, layers, ctx_len, dim = tower.width, len(tower.blocks), tower.context_length, int(info.embed_dim)

    branches: dict[str, tuple[ReferenceFile, str]] = {"render": (plan.rendering, RENDERING_KEY)}
    if plan.rgb is not None:
        branches["aligned"] = (plan.rgb, RGB_KEY)
    prompts: dict[str, dict[str, np.ndarray]] = {}
    shapes: dict[str, PromptShapes] = {}
    text: dict[str, np.ndarray] = {}
    for name, (ref, entry) in branches.items():
        sd = ref.content[entry]
        prompts[name], shapes[name] = prompt_tensors(sd, ref.path, entry, width, layers, ctx_len)
        rd.check_finite(ref.path, prompts[name], advice=_CORRUPT)
        text[name] = _text_of(model, prompts[name], shapes[name], ref.path, entry, sd)
    if plan.rgb is not None:
        aligner = rd.check_finite(plan.rgb.path, aligner_tensors(plan.rgb.content[ALIGNER_KEY], plan.rgb.path, dim),
                                  advice=_CORRUPT)
        weight = 0.5 if fusion_weight is None else float(fusion_weight)
    else:  # PointAD: the aligned branch is off
        aligner = {k: np.zeros((dim, dim) if k.endswith("weight") else (dim,), np.float32)
                   for k in ALIGNER_KEY_MAP.values()}
        prompts["aligned"], shapes["aligned"], text["aligned"] = prompts["render"], shapes["render"], text["render"]
        if fusion_weight not in (None, 0.0):
            raise InputError(f"{plan.rendering.path}: a single-prompt (PointAD) checkpoint has no aligned branch; "
                             f"its fusion weight is 0, not {fusion_weight}")
        weight = 0.0
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"--fusion-weight {weight}: must be in [0, 1]")

    settings = settings_for(dataset, category)
    config = {
        "format": rd.RUN_FORMAT, "format_version": rd.RUN_FORMAT_VERSION, "version": __version__,
        "dataset": dataset, "category": category, "root": "",
        "clip": {"name": clip, "weights": clip_weights, "weights_id": info.weights_id, "init_seed": seed},
        "render_settings": settings.to_dict(),
        "training": {"imported": True},
        "seeds": {"training": None, "clip_init": seed}, "fusion_weight": weight,
        "libraries": library_versions(), "samples": [],
        "import": {
            "layout": plan.layout,
            "sources": {name: {"file": str(ref.path.resolve()), "sha256": ref.sha256, "entry": entry}
                        for name, (ref, entry) in branches.items()},
            "aligner_source": None if plan.rgb is None else {"file": str(plan.rgb.path.resolve()),
                                                             "sha256": plan.rgb.sha256, "entry": ALIGNER_KEY},
            "prompt_shapes": {k: vars(v) for k, v in shapes.items()},
            "mapping": {"ctx_pos": "normal", "ctx_neg": "abnormal", RGB_KEY: "aligned branch",
                        RENDERING_KEY: "rendering branch", **{f"aligner.{k}": v for k, v in ALIGNER_KEY_MAP.items()}},
            "ignored": ["compound_prompt_projections.* (unused by the reference's forward)",
                        "token_prefix_*/token_suffix_* (rebuilt from the CLIP's token embedding)",
                        "tokenized_prompts_* (checked equal to ours)"],
            "notes": plan.notes,
        },
    }
    _write_run(out, config, aligner, prompts, text)
    return out, plan


def _write_run(out: Path, config: dict[str, Any], aligner: dict[str, np.ndarray],
               prompts: dict[str, dict[str, np.ndarray]], text: dict[str, np.ndarray]) -> None:
    """Write every file into a staging folder beside ``out``, then move it into place."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as err:
        raise RunDirError(f"{out}: cannot create the run directory ({err.strerror or type(err).__name__})") from None
    try:
        rd.save_tensors(stage / rd.ALIGNER, aligner, {"source": "reference checkpoint"})
        rd.save_tensors(stage / rd.PROMPTS_RENDER, prompts["render"])
        rd.save_tensors(stage / rd.PROMPTS_ALIGNED, prompts["aligned"])
        rd.save_tensors(stage / rd.TEXT, {"text": np.stack([text["render"], text["aligned"]]).astype(np.float32)},
                        {"layout": "branch(render,aligned),state(normal,abnormal),D"})
        rd.write_config(stage, json.loads(json.dumps(config)))
        os.chmod(stage, 0o777 & ~_umask())
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
