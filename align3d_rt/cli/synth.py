"""``align3d-rt synth``: write a synthetic dataset in the MVTec 3D-AD or Real3D-AD layout."""
from __future__ import annotations

import argparse
from pathlib import Path

from align3d_rt import errors
from align3d_rt.cli.numbers import non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="generate a small synthetic dataset in a real dataset layout",
                              description="Generate a synthetic dataset (deterministic by --seed).")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder, new or empty (categories are written inside)")
    p.add_argument("--layout", choices=("mvtec3d", "real3d"), default="mvtec3d")
    p.add_argument("--categories", default="", help="comma-separated shape names (default: all of the layout)")
    p.add_argument("--n-train", type=non_negative_int, default=2)
    p.add_argument("--n-test-good", type=non_negative_int, default=2, help="mvtec3d: good test samples per category")
    p.add_argument("--n-per-defect", type=non_negative_int, default=1, help="mvtec3d: samples per defect kind")
    p.add_argument("--n-test", type=non_negative_int, default=4, help="real3d: test samples per category")
    p.add_argument("--n-points", type=positive_int, default=30000, help="real3d: points per cloud")
    p.add_argument("--size", default="180x240", help="mvtec3d: HxW of every scan")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(func=run_synth)


MAX_SCAN_CELLS = 2048 * 2048  # MVTec 3D-AD scans are about 800x800; larger ones do not fit in memory


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise errors.Align3DError(f"--size: expected HxW like 180x240, got {text!r}") from None
    if h < 40 or w < 40:
        raise errors.Align3DError(f"--size: scans must be at least 40x40, got {text!r}")
    if h * w > MAX_SCAN_CELLS:
        raise errors.Align3DError(f"--size: scans hold at most {MAX_SCAN_CELLS} cells (e.g. 2048x2048), got {text!r}")
    return h, w


def run_synth(args: argparse.Namespace) -> int:
    cats = [c.strip() for c in args.categories.split(",") if c.strip()] or None
    if args.categories.strip() and cats is None:
        raise errors.Align3DError(f"--categories {args.categories!r}: names no category (leave it out for all)")
    for name in ("n_train", "n_test_good", "n_per_defect", "n_test", "n_points"):
        if getattr(args, name) < 0:
            raise errors.Align3DError(f"--{name.replace('_', '-')} must be >= 0")
    from align3d_rt.cli.out_folder import OutputFolder

    if args.layout == "mvtec3d":
        _size(args.size)  # bad options first, before the folder is looked at
    folder = OutputFolder(args.out, "synth")
    folder.check()  # a new or empty folder: a dataset's files are never overwritten
    with folder:
        return _generate(args, cats)


def _generate(args: argparse.Namespace, cats: list[str] | None) -> int:
    from align3d_rt.data import synthetic

    try:
        if args.layout == "mvtec3d":
            root = synthetic.generate_mvtec_layout(args.out, categories=cats, n_train=args.n_train,
                                                   n_test_good=args.n_test_good, n_per_defect=args.n_per_defect,
                                                   size=_size(args.size), seed=args.seed)
        else:
            root = synthetic.generate_real3d_layout(args.out, categories=cats, n_train=args.n_train,
                                                    n_test=args.n_test, n_points=max(args.n_points, 1), seed=args.seed)
    except ValueError as err:  # unknown category / defect names
        raise errors.Align3DError(str(err)) from None
    print(f"wrote synthetic {args.layout} dataset to {root}")
    return 0
