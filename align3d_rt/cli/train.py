"""`align3d-rt train`: the two-stage Align3D-AD training on an auxiliary category (torch imported lazily)."""
from __future__ import annotations

import argparse

from align3d_rt.cli.numbers import (
    fraction,
    image_size,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from align3d_rt.errors import Align3DError

DATASETS = ("mvtec3d", "eyecandies", "real3d", "synthetic")


def _stop_after(text: str) -> tuple[int, int]:
    try:
        stage, epochs = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STAGE:EPOCHS, e.g. 2:3") from None
    if stage not in (1, 2) or epochs < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: stage must be 1 or 2 and epochs >= 0")
    return stage, epochs


def train_device(text: str) -> str:
    """--device: auto, cpu, cuda or cuda:N (anything else would be a torch traceback mid-run)."""
    import re

    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", text):
        return text
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the aligner (stage 1) and the prompt learners (stage 2)",
                              description="Train Align3D-AD on the test split of one auxiliary category "
                                          "(it holds the anomalies and point labels). Under `torchrun "
                                          "--nproc-per-node N -m align3d_rt train ...` the samples of every "
                                          "batch are split over the ranks (DistributedDataParallel; gloo on "
                                          "CPU, nccl on GPUs); --batch-size stays the global batch.")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--category", required=True, help="auxiliary training category")
    p.add_argument("--out", required=True, help="run directory to create (or resume)")
    p.add_argument("--clip", default="ViT-L-14-336", help="CLIP model ('align3d-tiny' = tiny random test model)")
    p.add_argument("--clip-weights", default=None, help="local CLIP weights file (default: cached OpenAI weights)")
    p.add_argument("--stage", default="both", choices=("1", "2", "both"))
    p.add_argument("--resume", action="store_true", help="continue from the last finished epoch")
    p.add_argument("--epochs1", type=non_negative_int, default=250)
    p.add_argument("--reweight-epochs", type=non_negative_int, default=50,
                   help="stage-1 epochs (at the end) with reweighting")
    p.add_argument("--reweight-lambda", type=non_negative_float, default=1.0)
    p.add_argument("--epochs2", type=non_negative_int, default=15)
    p.add_argument("--dpca-epochs", type=non_negative_int, default=5,
                   help="stage-2 epochs (at the end) with the DpCA term")
    p.add_argument("--dpca-scale", type=non_negative_float, default=0.05,
                   help="weight of the DpCA term: 0.05 (default) is the paper's value, 0.1 the reference code's")
    p.add_argument("--batch-size", type=positive_int, default=4, help="clouds per step")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--fusion-weight", type=fraction, default=0.5, help="weight of the aligned branch at inference")
    p.add_argument("--preset", default=None, help="view preset (default: the dataset's)")
    p.add_argument("--renderer", default="splat", choices=("splat", "open3d"))
    p.add_argument("--image-size", type=image_size, default=None,
                   help="render size (default 336; smaller for quick demos)")
    p.add_argument("--max-samples", type=positive_int, default=None, help="use at most N training samples")
    p.add_argument("--device", type=train_device, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--stop-after", type=_stop_after, default=None, metavar="STAGE:EPOCHS",
                   help="stop once STAGE has finished EPOCHS epochs (continue later with --resume)")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from align3d_rt.cli.out_folder import check_writable_target
    from align3d_rt.train.runner import TrainConfig, train_run

    if args.max_samples is not None and args.max_samples < 1:
        raise Align3DError(f"--max-samples {args.max_samples}: must be at least 1")
    check_writable_target(Path(args.out), "run directory")  # before any work
    cfg = TrainConfig(
        dataset=args.dataset, root=args.root, category=args.category, out=args.out, clip=args.clip,
        clip_weights=args.clip_weights, stage=args.stage, resume=args.resume, epochs1=args.epochs1,
        reweight_epochs=args.reweight_epochs, reweight_lambda=args.reweight_lambda, epochs2=args.epochs2,
        dpca_epochs=args.dpca_epochs, dpca_scale=args.dpca_scale, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, fusion_weight=args.fusion_weight, preset=args.preset, renderer=args.renderer,
        image_size=args.image_size,
        max_samples=args.max_samples, device=args.device, progress=not args.no_progress, stop_after=args.stop_after,
    )
    from align3d_rt import distributed

    with distributed.session(args.device) as rank:  # torchrun: process group, this rank's device
        out = train_run(cfg)
    if rank.is_main:
        print(f"run directory: {out}")
    return 0
