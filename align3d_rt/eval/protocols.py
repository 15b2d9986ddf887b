"""Evaluation protocols: one-vs-rest and cross-dataset, over a Detector (any backend).

Per test class the test split is scored in batches; only what the metrics need is kept (object
score + label; per valid point its fused score, label and grid cell; per organized sample the
blurred 336 grid and its ground truth), never the renders, so hundreds of samples fit in memory.
A few good and anomalous examples per class keep their renders for pictures.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.errors import Align3DError
from align3d_rt.eval.operating_point import RegionHits
from align3d_rt.eval.pictures import Example
from align3d_rt.eval.report import METRIC_KEYS, ClassResult
from align3d_rt.scoring import BLUR_SIGMA

PROTOCOLS = ("one-vs-rest", "cross-dataset")


@dataclass
class SampleScores:
    """What one scored sample adds to its class's metrics (picklable: ranks send these to rank 0)."""

    object_score: float
    object_label: int
    point_scores: np.ndarray | None = None    # None: anomalous without point labels (object metrics only)
    point_labels: np.ndarray | None = None
    grid_index: np.ndarray | None = None
    grid_shape: tuple[int, int] | None = None
    reference_map: np.ndarray | None = None
    hits: RegionHits | None = None   # with a calibration: the part's regions against its defects

    @classmethod
    def of(cls, sample: Any, fused: np.ndarray, object_score: float, reference: Any = None) -> SampleScores:
        anomalous = sample.is_anomalous
        if anomalous is None:
            raise Align3DError(f"{sample.source}: test sample without a label; evaluation needs ground truth")
        rec = cls(object_score=float(object_score), object_label=int(anomalous))
        labels = sample.point_labels
        if labels is None:
            if anomalous:
                return rec
            labels = np.zeros(sample.num_points, dtype=np.uint8)
        rec.point_scores = np.asarray(fused, dtype=np.float32)
        rec.point_labels = np.asarray(labels, dtype=np.uint8)
        organized = sample.grid_index is not None and sample.grid_shape is not None
        rec.grid_index = np.asarray(sample.grid_index, dtype=np.int32) if organized else None
        rec.grid_shape = (int(sample.grid_shape[0]), int(sample.grid_shape[1])) if organized else None
        if reference is not None and organized:
            rec.reference_map = np.asarray(reference.point_map, dtype=np.float32)
        return rec


@dataclass
class ClassScores:
    """The per-sample data one class's metrics need (float32 / uint8 / int32 only, no renders)."""

    object_scores: list[float] = field(default_factory=list)
    object_labels: list[int] = field(default_factory=list)
    point_scores: list[np.ndarray] = field(default_factory=list)   # (N,) float32 fused, valid points
    point_labels: list[np.ndarray] = field(default_factory=list)   # (N,) uint8
    grid_index: list[np.ndarray | None] = field(default_factory=list)   # (N,) int32 cell of each point
    grid_shapes: list[tuple[int, int] | None] = field(default_factory=list)
    reference_maps: list[np.ndarray] = field(default_factory=list)  # --scoring reference: (H,W) P-R/P-P maps
    hits: RegionHits = field(default_factory=RegionHits)   # with a calibration: summed over the parts

    def add(self, sample: Any, fused: np.ndarray, object_score: float, reference: Any = None) -> None:
        self.append(SampleScores.of(sample, fused, object_score, reference))

    def append(self, rec: SampleScores) -> None:
        self.object_scores.append(rec.object_score)
        self.object_labels.append(rec.object_label)
        if rec.hits is not None:
            self.hits = self.hits + rec.hits
        if rec.point_scores is None:
            return  # anomalous without point labels: object metrics only
        self.point_scores.append(rec.point_scores)
        self.point_labels.append(rec.point_labels)  # type: ignore[arg-type]
        self.grid_index.append(rec.grid_index)
        self.grid_shapes.append(rec.grid_shape)
        if rec.reference_map is not None:
            self.reference_maps.append(rec.reference_map)

    @property
    def organized(self) -> bool:
        return bool(self.point_scores) and all(g is not None for g in self.grid_index)

    def compute(self, sigma: float = BLUR_SIGMA) -> dict[str, float | None]:
        """O-R, O-A; P-R, P-P the reference way (blurred organized grid, all cells) and
        P-R (pt), P-P (pt) over valid points only. Undefined metrics are None."""
        import warnings

        from align3d_rt.eval import metrics

        out: dict[str, float | None] = dict.fromkeys(("O-R", "O-A", "P-R", "P-P", "P-R (pt)", "P-P (pt)"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.MetricUndefinedWarning)
            out["O-R"] = metrics.object_auroc(self.object_labels, self.object_scores)
            out["O-A"] = metrics.object_ap(self.object_labels, self.object_scores)
            if self.point_scores:
                if self.organized and len(self.reference_maps) == len(self.point_scores):
                    ref = self._reference_map_metrics(metrics)
                    pt = metrics.per_point_metrics(self.point_scores, self.point_labels, self.grid_index,
                                                   self.grid_shapes)
                    out.update({"P-R": ref["auroc"], "P-P": ref["aupro"],
                                "P-R (pt)": pt["auroc"], "P-P (pt)": pt["aupro"]})
                elif self.organized:
                    ref = metrics.grid_metrics(self.point_scores, self.point_labels, self.grid_index,
                                               self.grid_shapes, sigma=sigma)
                    pt = metrics.per_point_metrics(self.point_scores, self.point_labels, self.grid_index,
                                                   self.grid_shapes)
                    out.update({"P-R": ref["auroc"], "P-P": ref["aupro"],
                                "P-R (pt)": pt["auroc"], "P-P (pt)": pt["aupro"]})
                else:  # unorganized clouds (Real3D-AD): point AUROC only
                    auroc = metrics.point_auroc(self.point_labels, self.point_scores)
                    out.update({"P-R": auroc, "P-R (pt)": auroc})
        return {k: (None if v is None or np.isnan(v) else float(v)) for k, v in out.items()}

    def _reference_map_metrics(self, metrics: Any) -> dict[str, float]:
        """--scoring reference: P-R/P-P over every cell of the reference's point maps (already blurred)."""
        masks = [metrics.points_to_grid(np.asarray(lab) > 0, idx, shape).astype(np.uint8)
                 for lab, idx, shape in zip(self.point_labels, self.grid_index, self.grid_shapes, strict=True)]
        return metrics.map_metrics(self.reference_maps, masks)


def training_origin(info: dict[str, Any]) -> tuple[str | None, str | None]:
    """(dataset, category) the detector's model was trained on, read from the run/bundle config."""
    cfg = info.get("run_config")
    if cfg is None:
        cfg = (info.get("bundle_manifest") or {}).get("run", {}).get("config")
    if not isinstance(cfg, dict):
        return None, None
    for scope in (cfg, cfg.get("data", {}), cfg.get("training", {}), cfg.get("train", {})):
        if isinstance(scope, dict) and scope.get("category"):
            return scope.get("dataset"), str(scope["category"])
    return cfg.get("dataset"), None


def select_classes(protocol: str, dataset: str, root: str | Path, info: dict[str, Any],
                   categories: Sequence[str] | None = None) -> tuple[list[str], str | None]:
    """Test classes for a protocol; one-vs-rest drops the run's training class (returned second)."""
    from align3d_rt.data.readers import list_categories

    if protocol not in PROTOCOLS:
        raise Align3DError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    available = list_categories(dataset, root)
    if categories:
        unknown = [c for c in categories if c not in available]
        if unknown:
            raise Align3DError(f"{root}: no class {', '.join(unknown)} in this {dataset} root (has: "
                               f"{', '.join(available)})")
        chosen = list(categories)
    else:
        chosen = available
    train_ds, train_cat = training_origin(info)
    excluded = None
    if protocol == "one-vs-rest" and train_cat is not None and train_cat in chosen:
        excluded = train_cat
        chosen = [c for c in chosen if c != train_cat]
    if not chosen:
        raise Align3DError(f"{root}: no test classes left (training class {train_cat!r} excluded)")
    return chosen, excluded


def evaluate_class(detector: Any, dataset: str, root: str | Path, category: str, batch_size: int = 2,
                   n_examples: int = 1, progress: bool = True, on_example: Callable[[Example], None] | None = None,
                   calibration: Any = None) -> tuple[ClassResult, list[Example]]:
    """Score the test split of one class; returns its metrics and up to n_examples good + bad examples.

    With a calibration (§13) the result also holds the figures at its operating point
    (``ClassResult.operating``, eval/operating_point.py).

    Under torchrun each rank scores ``refs[rank::world]``; the per-sample scores, failures and example
    candidates are gathered (all_gather_object) and merged in the split's order, so the metrics and the
    examples are those of a single-process run."""
    from tqdm import tqdm

    from align3d_rt import distributed as dist_util
    from align3d_rt.data.readers import list_samples

    refs = list_samples(dataset, root, category, "test")
    if not refs:
        raise Align3DError(f"{root}: class {category!r} has no test samples")
    progress = progress and dist_util.is_main()
    mine = dist_util.shard(list(enumerate(refs)))
    scored: list[tuple[int, SampleScores | str]] = []   # (index in the split, scores or the failure line)
    candidates: list[tuple[int, Example]] = []
    wanted = {True: n_examples, False: n_examples}
    t0 = time.perf_counter()
    from align3d_rt.eval.operating_point import at_operating_point, part_region_hits

    bar = tqdm(total=len(mine), desc=f"{category:>12s}", unit="sample", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=True)

    def still_wanted(sample: Any) -> bool:
        return wanted[bool(sample.is_anomalous)] > 0

    for (index, ref), res in detector.score_stream(mine, load=lambda item: item[1].load(), batch_size=batch_size,
                                                   keep_render=still_wanted):
        bar.update(1)
        if isinstance(res, Exception):  # one bad sample: recorded as failed, the class goes on
            scored.append((index, _problem(ref.path, res)))
            continue
        sample = res.sample
        try:
            rec = SampleScores.of(sample, res.fused, res.object_score, res.reference)
            if calibration is not None and (sample.point_labels is not None or not sample.is_anomalous):
                rec.hits = part_region_hits(sample.points, res.fused, sample.point_labels, calibration)
            scored.append((index, rec))
        except Align3DError as err:
            scored.append((index, _problem(ref.path, err)))
            continue
        anomalous = bool(sample.is_anomalous)
        if wanted[anomalous] > 0 and res.render is not None:
            wanted[anomalous] -= 1
            candidates.append((index, _example(detector, sample, res)))
        res.render = res.sample = None
    bar.close()
    dist_util.fail_point("eval")
    acc, failed, examples = _merge(dist_util.gather_objects((scored, candidates)), refs, n_examples)
    if failed and progress:
        for msg in failed.values():
            print(f"align3d-rt eval: failed {msg}", file=sys.stderr)
    metrics = acc.compute() if acc.object_labels else dict.fromkeys(METRIC_KEYS)
    result = ClassResult(category=category, n_samples=len(acc.object_labels), n_anomalous=int(sum(acc.object_labels)),
                         metrics=metrics, seconds=time.perf_counter() - t0, failed=failed)
    if calibration is not None:
        result.operating = at_operating_point(acc.object_scores, acc.object_labels, acc.hits, calibration).to_dict()
    return result, examples


def _merge(parts: list[Any], refs: list[Any], n_examples: int) -> tuple[ClassScores, dict[str, str], list[Example]]:
    """Every rank's (scored, candidates) -> the class's scores, failures and examples in the split's order."""
    scored = sorted((item for part in parts for item in part[0]), key=lambda item: item[0])
    acc = ClassScores()
    failed: dict[str, str] = {}
    for index, rec in scored:
        if isinstance(rec, str):
            failed[str(refs[index].path)] = rec
        else:
            acc.append(rec)
    wanted = {True: n_examples, False: n_examples}
    examples: list[Example] = []
    for _, ex in sorted((c for part in parts for c in part[1]), key=lambda c: c[0]):
        if wanted[ex.is_anomalous] > 0:
            wanted[ex.is_anomalous] -= 1
            examples.append(ex)
    return acc, failed, examples


def _problem(path: Any, err: Exception) -> str:
    """``PATH: problem`` on one line."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    return msg if msg.startswith(str(path)) else f"{path}: {msg}"


def _example(detector: Any, sample: Any, res: Any) -> Example:
    from align3d_rt.scoring import fuse_branches

    gt = None
    if sample.point_labels is not None and np.any(sample.point_labels):
        from align3d_rt.render import render_views

        gt = render_views(sample.points, detector.settings_for_sample(sample), labels=sample.point_labels).gt_masks
    return Example(sample_id=res.sample_id, category=sample.category, is_anomalous=bool(sample.is_anomalous),
                   object_score=float(res.object_score), images=np.asarray(res.render.images),
                   maps=fuse_branches(res.view_maps, detector.fusion_weight), gt_masks=gt)


@dataclass
class EvalOutcome:
    """What run_protocol produced."""

    results: list[ClassResult]
    examples: list[Example]
    excluded: str | None
    manifest: dict[str, Any]
    paths: dict[str, Path]


def run_protocol(detector: Any, protocol: str, dataset: str, root: str | Path, out_dir: str | Path,
                 categories: Sequence[str] | None = None, batch_size: int = 2, n_examples: int = 1,
                 name: str = "results", progress: bool = True, extra_manifest: dict[str, Any] | None = None,
                 resume: bool = False, calibration: Any = None, calibrate_on: str | None = None,
                 target_false_reject: float | None = None) -> EvalOutcome:
    """Evaluate every test class; tables (md/csv/json), example pictures and manifest.json are rewritten as
    each class finishes (its result also goes to NAME_classes/ so ``resume`` skips it next time). Samples that
    cannot be scored are listed as failed (tables, manifest) and the evaluation goes on.

    ``calibration`` (a loaded §13 Calibration) or ``calibrate_on`` (a split: per class, fit one on that
    split's good parts with the default rule, saved under NAME_calibrations/) add the figures at the
    calibrated operating point (eval/operating_point.py) to every class."""
    from align3d_rt.eval import class_store, pictures, report

    out = Path(out_dir)
    classes, excluded = select_classes(protocol, dataset, root, detector.info, categories)
    train_ds, train_cat = training_origin(detector.info)
    info = detector.describe()
    identity = {"protocol": protocol, "dataset": dataset, "dataset_root": str(Path(root).resolve()),
                "blur_sigma": BLUR_SIGMA, **{k: info.get(k) for k in _IDENTITY_KEYS}}
    if calibration is not None and calibrate_on is not None:
        raise Align3DError("--calibration and --calibrate-on: choose one")
    if calibration is not None:
        identity["calibration"] = calibration.to_dict().get("calibration_sha256")
    elif calibrate_on is not None:
        identity["calibration"] = {"calibrate_on": calibrate_on, "target_false_reject": target_false_reject}
    identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
    from align3d_rt import distributed as dist_util

    main = dist_util.is_main()  # under torchrun only rank 0 writes; every rank scores its shard
    progress = progress and main
    store = class_store.class_dir(out, name)
    if main:
        store.mkdir(parents=True, exist_ok=True)
    title = (f"{protocol}: trained on {train_ds or '?'}/{train_cat or '?'}, tested on {dataset} "
             f"({detector.backend_name})")
    manifest_path = out / (f"{name}_manifest.json" if name != "results" else "manifest.json")
    cal_dir = out / f"{name}_calibrations"
    cal_manifest: dict[str, Any] | None = None
    if calibration is not None:
        cal_manifest = {"product": calibration.product, "calibration_sha256": identity["calibration"],
                        "rule": calibration.rule, "object_threshold": calibration.object.threshold,
                        "point_threshold": calibration.point.threshold}
    elif calibrate_on is not None:
        cal_manifest = {"calibrate_on": calibrate_on, "rule": "conformal",
                        "target_false_reject": target_false_reject, "files": {}}
    pic_dir = out / f"{name}_examples"
    results: list[ClassResult] = []
    examples: list[Example] = []
    paths: dict[str, Path] = {}
    manifest: dict[str, Any] = {}

    def publish(status: str) -> None:
        nonlocal paths, manifest
        if not main:
            return
        paths = report.write_tables(out, results, name=name, title=title) if results else {}
        if status == "complete":
            sheet = pictures.save_contact_sheet(out / f"{name}_contact_sheet.png", examples)
            if sheet is not None:
                paths["contact_sheet"] = sheet
        manifest = report.build_manifest(
            info, protocol=protocol, dataset=dataset, dataset_root=identity["dataset_root"],
            test_classes=classes, excluded_training_class=excluded, training_dataset=train_ds,
            training_category=train_cat, blur_sigma=BLUR_SIGMA, batch_size=batch_size,
            tables={k: str(v.name) for k, v in paths.items()}, status=status,
            finished_classes=[r.category for r in results],
            failed_samples={r.category: r.failed for r in results if r.failed},
            **({"calibration": cal_manifest} if cal_manifest is not None else {}),
            **(extra_manifest or {}),
        )
        report.write_manifest(manifest_path, manifest)

    publish("running")  # from the start the folder says what it holds
    try:
        with detector:
            for cat in classes:
                if calibrate_on is not None:
                    cal_manifest["files"][cat] = f"{cal_dir.name}/{cat}.json"  # type: ignore[index]
                done = class_store.load_class(store, cat, identity) if resume else None
                if done is not None:
                    if progress:
                        print(f"align3d-rt eval: {cat}: already evaluated (--resume), not rescored", file=sys.stderr)
                    res, ex = done
                else:
                    cal = calibration
                    if calibrate_on is not None:
                        cal = _fit_class(detector, dataset, root, cat, calibrate_on, target_false_reject, batch_size,
                                         progress, cal_dir if main else None)
                    res, ex = evaluate_class(detector, dataset, root, cat, batch_size=batch_size,
                                             n_examples=n_examples, progress=progress, calibration=cal)
                    if main:
                        for e in ex:
                            pictures.save_example(pic_dir, e)
                        class_store.save_class(store, res, ex, identity)
                results.append(res)
                examples += ex
                publish("running")
    except BaseException as err:
        if main:
            _record_stop(manifest_path, (store, pic_dir), bool(results) or resume, publish, err)
        raise
    publish("complete")
    paths["manifest"] = manifest_path
    return EvalOutcome(results=results, examples=examples, excluded=excluded, manifest=manifest, paths=paths)


def _record_stop(manifest_path: Path, folders: tuple[Path, ...], keep: bool, publish: Any,
                 err: BaseException) -> None:
    """A stopped evaluation never leaves a manifest saying "running": with nothing finished (and not --resume)
    the manifest and the empty folders it made are removed; otherwise it says "stopped" (continue: --resume)."""
    import contextlib

    if not keep:
        with contextlib.suppress(OSError):
            manifest_path.unlink()
        for folder in folders:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        return
    with contextlib.suppress(Exception):
        publish("interrupted" if isinstance(err, KeyboardInterrupt) else "stopped")


def _fit_class(detector: Any, dataset: str, root: str | Path, category: str, split: str,
               target_false_reject: float | None, batch_size: int, progress: bool, save_dir: Path | None) -> Any:
    """--calibrate-on: fit this class's calibration on its good parts of ``split`` (saved when save_dir)."""
    from align3d_rt.artifacts.calibration import save_calibration
    from align3d_rt.eval.split_calibration import fit_on_split

    cal = fit_on_split(detector, dataset, root, category, split, target_false_reject, batch_size, progress)
    if progress:
        print(f"align3d-rt eval: {category}: calibrated on {cal.n_good} good parts of {split} "
              f"(object threshold {cal.object.threshold:.6g})", file=sys.stderr)
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        save_calibration(cal, save_dir / f"{category}.json", overwrite=True)
    return cal


# Detector settings an evaluation's results depend on; --resume refuses results made with others.
_IDENTITY_KEYS = ("clip_name", "clip_weights_id", "bundle_hash", "backend", "precision", "fusion_weight",
                  "render_settings", "seeds")
