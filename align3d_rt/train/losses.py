"""Training losses (torch): Dice, focal, stage-1 alignment, stage-2 per-branch losses and DpCA.

Import torch-dependent code only from training paths: this module imports torch at top level.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "dice_loss", "focal_loss", "backproject_points", "gather_points", "upsample_maps", "stage1_loss",
    "semantic_weights", "BranchLosses", "branch_losses", "dpca_loss",
]


def dice_loss(probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over samples of 1 - (2*sum(p*t)+1) / (sum(p)+sum(t)+1); dim 0 is the sample axis.

    ``mask`` (same shape, 0/1) excludes entries (padded points) from every sum.
    """
    p = probs.reshape(probs.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.dtype)
    if mask is not None:
        m = mask.reshape(mask.shape[0], -1).to(p.dtype)
        p = p * m
        t = t * m
    inter = (p * t).sum(dim=1)
    per_sample = 1.0 - (2.0 * inter + 1.0) / (p.sum(dim=1) + t.sum(dim=1) + 1.0)
    return per_sample.mean()


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, eps: float = 1e-6) -> torch.Tensor:
    """Focal loss on class probabilities: mean of -(1-p_t)^gamma * log(p_t).

    probs (B,C,...) already softmaxed over C; target (B,...) integer class indices.
    """
    p_t = probs.gather(1, target.long().unsqueeze(1)).squeeze(1).clamp(eps, 1.0)
    return (-(1.0 - p_t).pow(gamma) * p_t.log()).mean()


def gather_points(up: torch.Tensor, pixels: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Mean over visible views of already-upsampled maps at each point's pixel.

    up (B,V,C,S,S), pixels (B,V,N,2) (x=col, y=row), visible (B,V,N) bool -> (B,N,C); 0 where visible nowhere.
    """
    b, v, c, size, _ = up.shape
    n = pixels.shape[2]
    flat = up.reshape(b, v, c, size * size)
    pix = pixels.long()
    index = (pix[..., 1] * size + pix[..., 0]).clamp(0, size * size - 1)                  # (B,V,N)
    gathered = flat.gather(3, index.unsqueeze(2).expand(b, v, c, n))                      # (B,V,C,N)
    vis = visible.to(up.dtype).unsqueeze(2)                                                # (B,V,1,N)
    total = (gathered * vis).sum(dim=1)                                                    # (B,C,N)
    count = vis.sum(dim=1)                                                                 # (B,1,N)
    scores = torch.where(count > 0, total / count.clamp(min=1.0), torch.zeros_like(total))
    return scores.transpose(1, 2)


def upsample_maps(maps: torch.Tensor, image_size: int) -> torch.Tensor:
    """(...,C,G,G) -> (...,C,S,S) bilinear, align_corners=False (the inference definition)."""
    lead = maps.shape[:-3]
    c, g = maps.shape[-3], maps.shape[-1]
    up = F.interpolate(maps.reshape(-1, c, g, g), size=(image_size, image_size), mode="bilinear", align_corners=False)
    return up.reshape(*lead, c, image_size, image_size)


def backproject_points(maps: torch.Tensor, pixels: torch.Tensor, visible: torch.Tensor,
                       image_size: int) -> torch.Tensor:
    """Differentiable back-projection: maps (B,V,C,G,G), pixels (B,V,N,2) (x=col, y=row),
    visible (B,V,N) bool -> (B,N,C).

    Same definition as ``align3d_rt.kernels.backproject``: bilinear upsample (align_corners=False)
    to SxS, gather at each point's pixel, mean over the views where it is visible; 0 where none.
    """
    return gather_points(upsample_maps(maps, image_size), pixels, visible)


def semantic_weights(patches_render: torch.Tensor, patches_rgb: torch.Tensor, lam: float) -> torch.Tensor:
    """Semantic-consistency weights w_i = 1 + lam * sigmoid(s_i), detached.

    s_i = mean over the RGB tokens j of the same view of cos(P_r_i, P_rgb_j); inputs (B,T,D) -> (B,T).
    """
    with torch.no_grad():
        r = F.normalize(patches_render.float(), dim=-1)
        mean_rgb = F.normalize(patches_rgb.float(), dim=-1).mean(dim=1, keepdim=True)  # (B,1,D)
        s = (r * mean_rgb).sum(dim=-1)
        return 1.0 + lam * torch.sigmoid(s)


def stage1_loss(aligned_global: torch.Tensor, rgb_global: torch.Tensor, aligned_patches: torch.Tensor,
                rgb_patches: torch.Tensor, render_patches: torch.Tensor | None = None,
                reweight: bool = False, lam: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """(1 - cos(MLP_g(g_r), g_rgb)) + mean_i w_i (1 - cos(MLP_p(P_r)_i, P_rgb_i)), averaged over views.

    Shapes: globals (B,D), patches (B,T,D) with B = views. ``render_patches`` (the raw rendering
    tokens) is needed when ``reweight``; otherwise w = 1.
    """
    g_term = (1.0 - F.cosine_similarity(aligned_global, rgb_global, dim=-1)).mean()
    tok = 1.0 - F.cosine_similarity(aligned_patches, rgb_patches, dim=-1)  # (B,T)
    if reweight:
        if render_patches is None:
            raise ValueError("reweighting needs the raw rendering patch tokens")
        tok = tok * semantic_weights(render_patches, rgb_patches, lam)
    p_term = tok.mean()
    total = g_term + p_term
    return total, {"global": float(g_term.detach()), "patch": float(p_term.detach()), "total": float(total.detach())}


@dataclass
class BranchLosses:
    """The four stage-2 losses of one branch (tensors with grad)."""

    seg3d: torch.Tensor
    seg2d: torch.Tensor
    cls_view: torch.Tensor
    cls_sample: torch.Tensor

    def total(self) -> torch.Tensor:
        return self.seg3d + self.seg2d + self.cls_view + self.cls_sample

    def as_floats(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": float(getattr(self, k).detach()) for k in ("seg3d", "seg2d", "cls_view", "cls_sample")}


def branch_losses(patch_probs: torch.Tensor, global_logits: torch.Tensor, pixels: torch.Tensor,
                  visible: torch.Tensor, point_labels: torch.Tensor, point_mask: torch.Tensor,
                  gt_masks: torch.Tensor, sample_labels: torch.Tensor) -> BranchLosses:
    """Stage-2 losses of one branch for a batch of B clouds with V views each.

    patch_probs (B,V,2,G,G) softmax probabilities [normal, abnormal]; global_logits (B,V,2);
    pixels (B,V,N,2); visible (B,V,N) bool; point_labels (B,N) 0/1; point_mask (B,N) 1 = real point
    (0 = padding); gt_masks (B,V,S,S) 0/1; sample_labels (B,) 0/1.
    """
    b, v, _, g, _ = patch_probs.shape
    size = gt_masks.shape[-1]
    labels = point_labels.float()
    up5 = upsample_maps(patch_probs, size)                       # (B,V,2,S,S), shared by the 3D and 2D terms
    pts = gather_points(up5, pixels, visible)                    # (B,N,2)
    seg3d = dice_loss(pts[..., 1], labels, point_mask) + dice_loss(pts[..., 0], 1.0 - labels, point_mask)

    up = up5.reshape(b * v, 2, size, size)
    gt = gt_masks.reshape(b * v, size, size).float()
    seg2d = focal_loss(up, gt.long()) + dice_loss(up[:, 1], gt) + dice_loss(up[:, 0], 1.0 - gt)

    view_labels = ((visible & (point_labels.unsqueeze(1) > 0)).any(dim=2)).long()  # (B,V)
    cls_view = F.cross_entropy(global_logits.reshape(b * v, 2), view_labels.reshape(-1))
    cls_sample = F.cross_entropy(global_logits.mean(dim=1), sample_labels.long())  # each sample's own views
    return BranchLosses(seg3d, seg2d, cls_view, cls_sample)


def dpca_loss(text_m: torch.Tensor, text_o: torch.Tensor, scale: float) -> torch.Tensor:
    """Dual-prompt contrast for branch m against the other branch o (detached here).

    text (2,D) [normal, abnormal]: 0.5 * (CE([cos(n_m,n_o), cos(n_m,a_m)], 0)
    + CE([cos(a_m,a_o), cos(a_m,n_m)], 0)) * scale.
    """
    n_m, a_m = text_m[0], text_m[1]
    n_o, a_o = text_o[0].detach(), text_o[1].detach()
    cos = lambda x, y: F.cosine_similarity(x, y, dim=-1)  # noqa: E731
    logits = torch.stack([torch.stack([cos(n_m, n_o), cos(n_m, a_m)]),
                          torch.stack([cos(a_m, a_o), cos(a_m, n_m)])])
    target = torch.zeros(2, dtype=torch.long, device=text_m.device)
    return 0.5 * scale * (F.cross_entropy(logits[0:1], target[0:1]) + F.cross_entropy(logits[1:2], target[1:2]))
