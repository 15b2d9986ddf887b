"""``align3d-rt bench``: the paper's time / FPS / memory table for every backend here, end to end.

Writes OUT/bench.md (the table in the paper's form beside the paper's Table 7, the stage split),
OUT/bench.json (every figure and the machine) and OUT/bench.png (stacked stage times); exported
bundles, generated clouds and scratch outputs stay under OUT/work (or --workdir) for the next run.
Rows come from the backend registry (``--list`` shows them and why any is skipped here).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from align3d_rt.cli.numbers import positive_float, positive_int
from align3d_rt.errors import Align3DError, input_error
from align3d_rt.runtime.devices import DEVICE_CHOICES

if TYPE_CHECKING:  # imported lazily at run time (bench pulls in the eval layer)
    from align3d_rt.eval.bench import BenchConfig

KIND_CHOICES = ("mvtec", "real3d")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="time / FPS / memory of every backend, end to end (the paper's table)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (bench.md, bench.json, bench.png)")
    p.add_argument("--clip", default="ViT-L-14-336", help="CLIP architecture of the random-weights run "
                   "(default ViT-L-14-336; align3d-tiny for a quick run)")
    p.add_argument("--run", type=Path, default=None, help="benchmark this training run instead of random weights")
    p.add_argument("--workdir", type=Path, default=None, help="bundles, clouds and scratch outputs (default OUT/work)")
    p.add_argument("--kinds", default="mvtec,real3d",
                   help="clouds: mvtec (organized 336x336 xyz tiff, preprocessed), real3d (112,896-point .pcd)")
    p.add_argument("--samples", type=positive_int, default=3, help="clouds per kind (default 3)")
    p.add_argument("--rows", default=None, help="comma-separated row ids (backend:variant) or backend names "
                   "(default: every row; see --list)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="where rows that can use either run (auto: CUDA when usable)")
    p.add_argument("--batch-sizes", default="1,2,4", help="clouds per encoder batch in the stream passes")
    p.add_argument("--no-warmup-each-batch", action="store_true",
                   help="skip the untimed stream before each batch size > 1 (saves time on slow CPUs)")
    p.add_argument("--in-process", action="store_true", help="measure every row in this process (no isolation)")
    p.add_argument("--row-timeout", type=positive_float, default=3600.0, help="seconds one row may take (default 3600)")
    p.add_argument("--mvtec-root", type=Path, default=None, help="take the mvtec clouds from this MVTec 3D-AD root")
    p.add_argument("--real3d-root", type=Path, default=None, help="take the real3d clouds from this Real3D-AD root")
    p.add_argument("--category", default=None, help="category under --mvtec-root / --real3d-root")
    p.add_argument("--inspector", type=Path, default=None,
                   help="the align3d-inspect binary (default: $ALIGN3D_INSPECT, else build/cpp)")
    p.add_argument("--skip", action="append", default=[], metavar="ROW=REASON",
                   help="do not measure ROW in this run; REASON is printed in the table (repeatable)")
    p.add_argument("--inspector-precision", choices=("fp32", "int8"), default="int8",
                   help="precision of the OpenVINO IR the C++ inspector reads: the bundle of the Python openvino "
                        "row of that precision (default int8, the fastest route)")
    p.add_argument("--inspector-performance-hint", choices=("LATENCY", "THROUGHPUT"), default="LATENCY",
                   help="--performance-hint of the C++ inspector row (default LATENCY, as align3d-inspect)")
    p.add_argument("--note", default="", help="a sentence printed under the table (e.g. that the machine was shared)")
    p.add_argument("--list", action="store_true", help="list the rows and whether each runs here, then exit")
    p.set_defaults(func=run_bench_cmd)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise Align3DError(f"{flag} {text!r}: give comma-separated whole numbers, e.g. 1,2,4") from None
    if not values or min(values) < 1:
        raise Align3DError(f"{flag} {text!r}: every value must be at least 1")
    return values


# What bench writes at the top of --out (reports, per-row logs, the default --workdir).
BENCH_ENTRIES = ("bench.md", "bench.json", "bench.png", "logs", "work")
BENCH_MARKERS = ("bench.json", "work/clouds")  # one of them marks an earlier bench


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Check the arguments (one-line errors) and build the BenchConfig; creates nothing."""
    from align3d_rt.cli.out_folder import check_resumable_out
    from align3d_rt.eval.bench import BenchConfig
    from align3d_rt.eval.bench.inspector import find_inspector

    check_resumable_out(args.out, "bench", BENCH_ENTRIES, BENCH_MARKERS)
    if args.samples < 1:
        raise Align3DError(f"--samples {args.samples}: must be at least 1")
    if args.row_timeout <= 0:
        raise Align3DError(f"--row-timeout {args.row_timeout}: must be positive")
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in KIND_CHOICES]
    if not kinds or bad:
        raise Align3DError(f"--kinds {args.kinds!r}: choose from {', '.join(KIND_CHOICES)}")
    if args.run is not None:
        from align3d_rt.artifacts.run_dir import load_run

        load_run(args.run)  # a bad run directory fails here with its own one-line error
    roots = {}
    for kind, root in (("mvtec", args.mvtec_root), ("real3d", args.real3d_root)):
        if root is None:
            continue
        if not root.is_dir():
            raise input_error(root, "no such dataset folder")
        if not args.category:
            raise Align3DError(f"--{kind}-root needs --category")
        roots[kind] = (root, args.category)
    inspector = args.inspector
    if inspector is not None and not inspector.is_file():
        raise input_error(inspector, "no such file (the align3d-inspect binary)")
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip()) if args.rows else None
    skip = {}
    for item in args.skip:
        row_id, sep, reason = item.partition("=")
        if not sep or not row_id.strip() or not reason.strip():
            raise Align3DError(f"--skip {item!r}: give ROW=REASON, e.g. torch:compile='compiles too slowly here'")
        skip[row_id.strip()] = reason.strip()
    return BenchConfig(out=args.out, clip=args.clip, run=args.run, workdir=args.workdir, kinds=kinds,
                       samples=args.samples, device=args.device, rows=rows,
                       batch_sizes=_ints(args.batch_sizes, "--batch-sizes"),
                       warmup_each_batch=not args.no_warmup_each_batch, isolate=not args.in_process,
                       row_timeout_s=args.row_timeout, roots=roots, inspector=inspector or find_inspector(),
                       inspector_precision=args.inspector_precision,
                       inspector_performance_hint=args.inspector_performance_hint, note=args.note, skip=skip)


def run_bench_cmd(args: argparse.Namespace) -> int:
    from align3d_rt.eval.bench import plan, run_bench

    config = config_from_args(args)
    rows = plan(config)  # an unknown --rows name fails here, before anything is written
    if args.list:
        for row in rows:
            print(f"{row.row_id:24s} {row.label:40s} {row.device:5s} "
                  + (f"skipped: {row.skip_reason}" if row.skip_reason else "runs here"))
        return 0

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = run_bench(config, progress=say)
    say(f"align3d-rt bench: wrote {args.out / 'bench.md'}, bench.json, bench.png")
    sys.stdout.write((args.out / "bench.md").read_text())
    failed = [r for r in report["rows"] if r.get("status") == "failed"]
    return 1 if failed else 0
