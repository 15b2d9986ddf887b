"""``align3d-rt import-checkpoint``: released Align3D-AD (or PointAD) checkpoints -> a run directory.

The run then works like a trained one: ``infer``/``eval --run`` and ``export``. Logic in
``align3d_rt.train.reference_import``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align3d_rt.cli.numbers import fraction

DATASETS = ("mvtec3d", "eyecandies", "real3d", "synthetic")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-checkpoint",
        help="turn released Align3D-AD checkpoints (epoch_N_rgb.pth + epoch_N_rendering.pth) or a PointAD "
             "checkpoint into a run directory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT",
                   help="epoch_N_rgb.pth and/or epoch_N_rendering.pth (the partner is found by name), or a "
                        "PointAD epoch_N.pth; loaded with torch.load(weights_only=True)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create (must not exist or be empty)")
    p.add_argument("--clip", default="ViT-L-14-336",
                   help="CLIP the checkpoints were trained with (default ViT-L-14-336)")
    p.add_argument("--clip-weights", default=None, help="CLIP weights file (default: the local cache)")
    p.add_argument("--dataset", choices=DATASETS, default="mvtec3d", help="dataset the checkpoint was trained on "
                   "(render settings; default mvtec3d)")
    p.add_argument("--category", default="", help="class the checkpoint was trained on (left out by one-vs-rest)")
    p.add_argument("--fusion-weight", type=fraction, default=None,
                   help="aligned-branch weight (default 0.5; PointAD checkpoints: always 0)")
    p.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from align3d_rt.train.reference_import import import_reference_checkpoints

    out, plan = import_reference_checkpoints(args.checkpoints, args.out, clip=args.clip,
                                             clip_weights=args.clip_weights, dataset=args.dataset,
                                             category=args.category, fusion_weight=args.fusion_weight)
    files = ", ".join(str(f.path) for f in (plan.rgb, plan.rendering) if f is not None)
    print(f"align3d-rt import-checkpoint: {plan.layout} ({files}) -> {out}", file=sys.stderr)
    for note in plan.notes:
        print(f"align3d-rt import-checkpoint: {note}", file=sys.stderr)
    return 0
