"""``align3d-rt infer``: score loose point-cloud files or folders of them (no ground truth needed).

Outputs under --out, per sample KEY (the file's stem, or its path below a given folder joined by '__'):
  KEY.scores.npy  (N,3) float32 point scores (render, aligned, fused)
  KEY.points.npy  (N,3) float32 the scored points (row i of the scores; after preprocessing/resampling)
  KEY.grid_index.npy  (N,) flat index into the 336x336 grid (organized .tiff input only)
  KEY.ply         the cloud coloured by the fused score (unless --no-ply)
  KEY.png         the rendered views with the fused anomaly map over them (unless --no-png)
  scores.json     object scores of every finished sample + the files that failed (rewritten
                  atomically after every sample)

Exit codes: 0 all scored; 1 some files failed (each reported on one line, the others scored);
2 nothing could start (bad run/bundle, missing backend, no input files).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from align3d_rt.errors import Align3DError, InputError, input_error
from align3d_rt.io_utils import save_npy_atomic

POINT_SUFFIXES = (".tiff", ".tif", ".pcd", ".ply", ".npy")
BACKENDS = ("torch", "onnxruntime", "tensorrt")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="score point-cloud files (.tiff/.pcd/.ply/.npy) or folders of them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="point-cloud files or folders (every point file below is scored)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="training run directory (torch backend)")
    src.add_argument("--bundle", type=Path, help="exported bundle directory (onnxruntime / tensorrt)")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="default: torch for --run, onnxruntime for --bundle")
    p.add_argument("--device", default="cpu", help="torch device for --run (default cpu)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--dataset", default="", help="dataset the files come from (render point size/normals), e.g. mvtec3d, real3d")
    p.add_argument("--category", default="", help="category of the files (MVTec point size per class)")
    p.add_argument("--batch-size", type=int, default=1, help="samples scored per encoder batch (default 1)")
    p.add_argument("--no-ply", action="store_true", help="do not write heat-coloured .ply files")
    p.add_argument("--no-png", action="store_true", help="do not write view pictures")
    p.set_defaults(func=run_infer)


def collect_files(paths: list[Path], exclude: Path | None = None) -> list[tuple[Path, str]]:
    """(file, output key) for every given file and every point file below every given folder."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*")
                if f.is_file() and f.suffix.lower() in POINT_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and not (exclude is not None and _is_below(f, exclude))
            )
            if not files:
                raise input_error(path, f"no point-cloud files ({', '.join(POINT_SUFFIXES)}) in this folder")
            base = path.name or "input"
            found += [(f, "__".join((base, *f.relative_to(path).with_suffix("").parts))) for f in files]
        elif path.is_file():
            found.append((path, path.stem))
        else:
            raise input_error(path, "no such file or folder")
    return _unique_keys(found)


def _is_below(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _unique_keys(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    seen: dict[str, int] = {}
    out = []
    for f, key in found:
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append((f, key if n == 0 else f"{key}_{n}"))
    return out


def build_detector(args: argparse.Namespace) -> Any:
    from align3d_rt.infer.pipeline import Detector

    if args.run is not None:
        return Detector.from_run(args.run, backend=args.backend or "torch", device=args.device)
    return Detector.from_bundle(args.bundle, backend=args.backend or "onnxruntime")


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + max(1, size)]


def run_infer(args: argparse.Namespace) -> int:
    from align3d_rt import progress
    from align3d_rt.data.readers import load_point_file
    from align3d_rt.data.real3d import NUM_POINTS as REAL3D_POINTS  # Real3D-AD clouds are resampled like the dataset
    from align3d_rt.infer import outputs
    from align3d_rt.io_utils import write_json_atomic

    files = collect_files(list(args.paths), exclude=args.out)
    detector = build_detector(args)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "detector": detector.describe(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "samples": {},
        "failed": {},
    }
    scores_json = args.out / "scores.json"

    def fail(path: Path, err: Exception) -> None:
        msg = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
        summary["failed"][str(path)] = msg
        progress.write(f"align3d-rt infer: skipped {msg}", file=sys.stderr)
        write_json_atomic(scores_json, summary)

    with detector, progress.bar(total=len(files), desc="infer", unit="sample", file=sys.stderr, dynamic_ncols=True) as bar:
        for chunk in _batches(files, args.batch_size):
            loaded = []
            for path, key in chunk:
                try:
                    sample = load_point_file(path, num_points=REAL3D_POINTS if args.dataset == "real3d" else None)
                    if sample.num_points == 0:
                        raise input_error(path, "no valid points")
                    sample.dataset = sample.dataset or args.dataset
                    sample.category = sample.category or args.category
                    loaded.append((path, key, sample))
                except InputError as err:
                    fail(path, err)
                    bar.update(1)
            for (path, key, sample), result in _score_isolated(detector, loaded, fail):
                _write_sample(args, outputs, detector, path, key, sample, result, summary)
                write_json_atomic(scores_json, summary)
                bar.update(1)
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(scores_json, summary)
    n_fail = len(summary["failed"])
    print(f"align3d-rt infer: scored {len(summary['samples'])} sample(s), {n_fail} failed -> {scores_json}", file=sys.stderr)
    return 1 if n_fail else 0


def _score_isolated(detector: Any, loaded: list[tuple[Path, str, Any]], fail: Any) -> list[tuple[tuple[Path, str, Any], Any]]:
    """Score a batch; if one sample is bad (InputError), score the others one by one."""
    if not loaded:
        return []
    if len(loaded) > 1:
        try:
            return list(zip(loaded, detector.score([s for _, _, s in loaded])))
        except InputError:
            pass  # find the bad one below
    done = []
    for item in loaded:
        try:
            done.append((item, detector.score([item[2]])[0]))
        except InputError as err:
            fail(item[0], err)
    return done


def _write_sample(args: argparse.Namespace, outputs: Any, detector: Any, path: Path, key: str,
                  sample: Any, result: Any, summary: dict[str, Any]) -> None:
    written = {"scores": f"{key}.scores.npy", "points": f"{key}.points.npy"}
    outputs.save_point_scores(args.out / written["scores"], result.point_scores)
    # The scored points themselves (row i of the scores): after MVTec preprocessing or Real3D-AD
    # resampling they are not the rows of the input file.
    save_npy_atomic(args.out / written["points"], np.asarray(sample.points, dtype=np.float32))
    if sample.grid_index is not None:
        written["grid_index"] = f"{key}.grid_index.npy"  # flat index into the 336x336 grid (organized input)
        save_npy_atomic(args.out / written["grid_index"], np.asarray(sample.grid_index, dtype=np.int64))
    if not args.no_ply:
        written["ply"] = f"{key}.ply"
        outputs.save_heat_ply(args.out / written["ply"], sample.points, result.fused)
    if not args.no_png and result.render is not None:
        written["png"] = f"{key}.png"
        fused = outputs.fused_view_maps(result.view_maps, detector.fusion_weight)
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
