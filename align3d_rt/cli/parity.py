"""``align3d-rt parity``: score the same clouds with a run (torch reference) and its bundle, and compare."""
from __future__ import annotations

import argparse
import sys
from itertools import zip_longest
from pathlib import Path
from typing import Any

from align3d_rt.cli.numbers import positive_int
from align3d_rt.cli.options import add_backend_option, add_runner_options, runner_options
from align3d_rt.data.files import collect_files
from align3d_rt.errors import Align3DError
from align3d_rt.runtime import registry
from align3d_rt.runtime.devices import DEVICE_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    q = subparsers.add_parser(
        "parity", help="compare an exported bundle with the torch reference of its run",
        description="Scores DATA with the run (torch) and the bundle, reports max abs differences of view maps, "
                    "point scores and object scores and the AUROC differences, writes parity.json. Exit 1 when "
                    "over the thresholds: fp32 1e-4 abs; fp16/int8 0.005 AUROC (0.5 points).")
    q.add_argument("data", nargs="+", type=Path, metavar="DATA",
                   help="point files / folders of them, or dataset roots with --dataset")
    q.add_argument("--run", type=Path, required=True, help="training run directory (torch reference)")
    q.add_argument("--bundle", type=Path, required=True, help="bundle exported from that run")
    add_backend_option(q, source="bundle")
    q.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="device of the bundle backend (default auto)")
    add_runner_options(q)
    q.add_argument("--dataset", default="", help="treat DATA as roots of this dataset (mvtec3d, eyecandies, real3d, "
                                                   "synthetic): labelled samples, so AUROC is compared too")
    q.add_argument("--category", action="append", default=[], help="dataset category (repeatable; default all)")
    q.add_argument("--split", default="test", help="dataset split (default test)")
    q.add_argument("--max-samples", type=positive_int, default=None, help="at most this many samples per category "
                                                                 "(taken across labels in turn)")
    q.add_argument("--batch-size", type=positive_int, default=2, help="samples per encoder batch (default 2)")
    q.add_argument("--out", type=Path, default=Path("parity.json"), help="report file (default ./parity.json)")
    q.set_defaults(func=run_parity_cmd)


def _interleave_by_label(refs: list[Any], limit: int | None) -> list[Any]:
    """Take refs across label names in turn (so a small limit still covers good and defective samples)."""
    if limit is None:
        return refs
    groups: dict[str, list[Any]] = {}
    for r in refs:
        groups.setdefault(str(getattr(r, "label_name", "")), []).append(r)
    mixed = [r for row in zip_longest(*groups.values()) for r in row if r is not None]
    return mixed[:max(0, limit)]


def load_data(paths: list[Path], dataset: str = "", categories: list[str] | None = None, split: str = "test",
              max_samples: int | None = None) -> list[Any]:
    """Samples from dataset roots (with ``dataset``) or loose point files / folders of them."""
    from align3d_rt.data import readers

    samples: list[Any] = []
    if dataset:
        for root in paths:
            cats = categories or readers.list_categories(dataset, root)
            for cat in cats:
                refs = _interleave_by_label(readers.list_samples(dataset, root, cat, split), max_samples)
                samples += [ref.load() for ref in refs]
    else:
        files = collect_files(paths)
        if max_samples is not None:
            files = files[:max_samples]
        samples = [readers.load_point_file(f) for f, _ in files]
    if not samples:
        raise Align3DError(f"{', '.join(map(str, paths))}: no samples found")
    return samples


def run_parity_cmd(args: argparse.Namespace) -> int:
    from align3d_rt.eval.parity import run_parity
    from align3d_rt.io_utils import write_json_atomic

    samples = load_data(list(args.data), args.dataset, args.category, args.split, args.max_samples)
    options = runner_options(args, args.backend or registry.default_backend("bundle"))
    report = run_parity(args.run, args.bundle, samples, backend=args.backend, batch_size=args.batch_size,
                        device=args.device, **options)
    write_json_atomic(args.out, report.to_dict())
    d = report.max_abs
    print(f"parity {report.precision} ({report.num_samples} samples x {report.num_views} views): max abs diff "
          f"maps {d['view_maps']:.3g}, global {d['global_probs']:.3g}, points {d['point_scores']:.3g}, "
          f"objects {d['object_scores']:.3g}")
    for name, a in report.auroc.items():
        if a["diff"] is None:
            print(f"  {name} AUROC: undefined (one class only)")
        else:
            print(f"  {name} AUROC: torch {a['reference']:.4f}, bundle {a['bundle']:.4f}, diff {a['diff']:+.4f}")
    if not report.checked:
        print("  no labels: AUROC thresholds could not be checked (use --dataset with labelled data)", file=sys.stderr)
    for f in report.failures:
        print(f"  FAIL: {f}", file=sys.stderr)
    print(f"{'PASS' if report.passed else 'FAIL'} -> {args.out}")
    return 0 if report.passed else 1
