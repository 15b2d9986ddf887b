"""``align3d-rt infer``: score loose point-cloud files or folders of them (no ground truth needed).

Outputs under --out, per sample KEY (the file's stem, or its path below a given folder joined by '__'):
  KEY.scores.npy  (N,3) float32 point scores (render, aligned, fused)
  KEY.points.npy  (N,3) float32 the scored points (row i of the scores; after preprocessing/resampling)
  KEY.grid_index.npy  (N,) flat index into the 336x336 grid (organized .tiff input only)
  KEY.ply         the cloud coloured by the fused score (unless --no-ply)
  KEY.png         the rendered views with the fused anomaly map over them (unless --no-png)
  KEY.html        with --html: a self-contained result page (3D cloud by score, decision, regions, views)
  index.html      with --html: the parts' pages, rejects first, then by object score
  scores.json     object scores of every finished sample + the files that failed (rewritten
                  atomically after every sample)
With --calibration CAL (align3d-rt calibrate), also KEY.normalized.npy (<f4 normalised point
scores), KEY.regions.npy (<i4 region id per point, 0 = none) and, per sample in scores.json,
decision (ok/reject), object_score_normalized, regions, num_regions (docs/runtime-spec.md 13.5).

Exit codes: 0 all scored; 1 some files failed (each reported on one line, the others scored);
2 nothing could start (bad run/bundle, missing backend, no input files; with --triton: the server
cannot be reached after bounded retries, or the model is missing or not ready).

With --triton URL (http://HOST:8000 or grpc://HOST:8001) the files are read here and scored by the
pipeline model of a Triton server (``align3d-rt export --format triton``); the outputs are the same.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from align3d_rt.cli import calibration_options
from align3d_rt.cli.infer_page import add_html_option, write_index, write_result_page
from align3d_rt.cli.infer_triton import add_triton_client_options, check_triton_choice, triton_scorer
from align3d_rt.cli.numbers import positive_int
from align3d_rt.cli.options import add_detector_options, build_detector, choose_bundle_backend, throughput_for_batches
from align3d_rt.cli.scoring_options import add_scoring_options, apply_scoring
from align3d_rt.data.files import collect_files
from align3d_rt.errors import Align3DError, InputError, input_error
from align3d_rt.io_utils import save_npy_atomic
from align3d_rt.render.views import DATASET_CATEGORIES

if TYPE_CHECKING:
    from align3d_rt.runtime.scorer import Scorer

DATASET_CHOICES = tuple(DATASET_CATEGORIES)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="score point-cloud files (.tiff/.pcd/.ply/.npy) or folders of them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="point-cloud files or folders (every point file below is scored)")
    add_detector_options(p, required=False, fastest_bundle=True)
    add_triton_client_options(p)
    add_scoring_options(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty; locked while written)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier infer output at --out: only the files it wrote "
                        "(a folder holding anything else is refused)")
    p.add_argument("--dataset", default=None, choices=DATASET_CHOICES,
                   help="dataset the files come from (render point size/normals; real3d: resampled to 112,896 points)")
    p.add_argument("--category", default=None, help="category of the files (MVTec point size per class); needs "
                   "--dataset and one of its categories")
    calibration_options.add_calibration_option(p)
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="clouds encoded in one encoder call (default 1); > 1 also selects OpenVINO's THROUGHPUT "
                        "hint unless --performance-hint is given")
    p.add_argument("--no-ply", action="store_true", help="do not write heat-coloured .ply files")
    p.add_argument("--no-png", action="store_true", help="do not write view pictures")
    add_html_option(p)
    p.set_defaults(func=run_infer)


def sample_loader(dataset: str, category: str) -> Any:
    """load((path, key)) -> PointCloudSample, as the infer command reads files (Real3D-AD resampled)."""
    from align3d_rt.data.readers import load_point_file
    from align3d_rt.data.real3d import NUM_POINTS as REAL3D_POINTS  # Real3D-AD clouds are resampled like the dataset

    def load(item: tuple[Path, str]) -> Any:
        path = item[0]
        sample = load_point_file(path, num_points=REAL3D_POINTS if dataset == "real3d" else None)
        if sample.num_points == 0:
            raise input_error(path, "no valid points")
        sample.dataset = sample.dataset or dataset
        sample.category = sample.category or category
        return sample

    return load


def run_infer(args: argparse.Namespace) -> int:
    from align3d_rt.cli.out_folder import OutputFolder
    from align3d_rt.render.views import category_problem

    check_triton_choice(args)
    folder = OutputFolder(args.out, "infer", overwrite=args.overwrite,
                          inputs=(getattr(args, "bundle", None),))
    folder.check()  # before any work
    cal = calibration_options.resolve_calibration(args)
    if (problem := category_problem(args.dataset, args.category)) is not None:  # settled by now (str)
        raise Align3DError(problem)
    # with --html, a file called index.* would have its page overwritten by index.html
    files = collect_files(list(args.paths), exclude=args.out, reserved=("index",) if args.html else ())
    args.backend_choice = choose_bundle_backend(args)  # no --backend for a bundle: its fastest on the CPU
    throughput_for_batches(args, args.batch_size)  # several clouds per encoder call: OpenVINO streams
    detector = triton_scorer(args) if args.triton else apply_scoring(args, build_detector(args))
    if cal is not None:
        calibration_options.attach(detector, cal, args.calibration)
    with folder:
        return _infer_into(args, files, detector)


def _infer_into(args: argparse.Namespace, files: list[tuple[Path, str]], detector: Scorer) -> int:
    from align3d_rt import progress
    from align3d_rt.eval import outputs
    from align3d_rt.io_utils import write_json_atomic

    summary: dict[str, Any] = {
        "detector": None,  # described once active (the runner adds e.g. its compute precision)
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "samples": {},
        "failed": {},
    }
    if (local_cal := getattr(detector, "calibration", None)) is not None:
        summary["calibration"] = calibration_options.summary_field(local_cal, args.calibration)
    elif (served := getattr(detector, "calibration_summary", None)) is not None:  # --triton: the served calibration
        summary["calibration"] = served
    if args.html:
        summary["index"] = "index.html"  # named before it is written: ours for a later --overwrite
    scores_json = args.out / "scores.json"
    keep_render = not args.no_png or args.html
    with detector, progress.bar(total=len(files), desc="infer", unit="sample", file=sys.stderr,
                                dynamic_ncols=True) as bar:
        summary["detector"] = {**detector.describe(), "dataset": args.dataset or None,
                               "category": args.category or None,
                               "backend_choice": getattr(args, "backend_choice", "asked")}
        stream = detector.score_stream(files, load=sample_loader(args.dataset, args.category),
                                       batch_size=args.batch_size, keep_render=keep_render)
        for (path, key), result in stream:
            if isinstance(result, InputError):
                msg = str(result) if str(result).startswith(str(path)) else f"{path}: {result}"
                summary["failed"][str(path)] = msg
                progress.write(f"align3d-rt infer: skipped {msg}", file=sys.stderr)
            else:
                _write_sample(args, outputs, detector, path, key, result, summary)
            write_json_atomic(scores_json, summary)
            bar.update(1)
    if args.html:
        write_index(args.out, summary["samples"])
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(scores_json, summary)
    n_fail = len(summary["failed"])
    print(f"align3d-rt infer: scored {len(summary['samples'])} sample(s), {n_fail} failed -> {scores_json}",
          file=sys.stderr)
    return 1 if n_fail else 0


def _write_sample(args: argparse.Namespace, outputs: Any, detector: Any, path: Path, key: str,
                  result: Any, summary: dict[str, Any]) -> None:
    from align3d_rt.io_utils import write_json_atomic
    from align3d_rt.scoring import fuse_branches

    sample = result.sample
    written = {"scores": f"{key}.scores.npy", "points": f"{key}.points.npy"}
    if sample.grid_index is not None:
        written["grid_index"] = f"{key}.grid_index.npy"  # flat index into the 336x336 grid (organized input)
    if not args.no_ply:
        written["ply"] = f"{key}.ply"
    if not args.no_png and result.render is not None:
        written["png"] = f"{key}.png"
    # Recorded before they are written: a later --overwrite knows them even if this run stops midway.
    later = {**({"normalized": f"{key}.normalized.npy", "regions": f"{key}.regions.npy"}
                if getattr(result, "decision", None) is not None else {}),
             **({"html": f"{key}.html"} if args.html else {})}
    summary["pending"] = {key: {"file": str(path), "outputs": {**written, **later}}}
    write_json_atomic(args.out / "scores.json", summary)
    outputs.save_point_scores(args.out / written["scores"], result.point_scores)
    # The scored points themselves (row i of the scores): after MVTec preprocessing or Real3D-AD
    # resampling they are not the rows of the input file.
    save_npy_atomic(args.out / written["points"], np.asarray(sample.points, dtype=np.float32))
    if "grid_index" in written:
        save_npy_atomic(args.out / written["grid_index"], np.asarray(sample.grid_index, dtype=np.int64))
    if "ply" in written:
        outputs.save_heat_ply(args.out / written["ply"], sample.points, result.fused)
    if "png" in written:
        fused = fuse_branches(result.view_maps, detector.fusion_weight)
        outputs.save_view_overlay(args.out / written["png"], result.render.images, fused,
                                  title=f"{key}  object score {result.object_score:.3f}")
    summary["samples"][key] = {
        "file": str(path),
        "object_score": float(result.object_score),
        "max_point_score": float(result.fused.max()),
        "num_points": int(sample.num_points),
        "outputs": written,
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
    }
    if getattr(result, "decision", None) is not None:
        calibration_options.write_decision(args.out, key, result.decision, written, summary["samples"][key])
    if args.html:
        written["html"] = write_result_page(args.out, key, result, summary["samples"][key], detector.fusion_weight)
    del summary["pending"]
