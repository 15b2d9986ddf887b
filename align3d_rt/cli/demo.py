"""``align3d-rt demo``, the offline end-to-end demo: synthetic data -> train (tiny CLIP) -> one-vs-rest
eval (torch, ONNX Runtime, OpenVINO) -> report.

``run_demo(DemoConfig(out=...))`` (CLI: ``align3d-rt demo --out DIR``) writes under OUT:
  data/            generated MVTec-layout dataset (several synthetic categories)
  run/             training run on one category ('align3d-tiny' random CLIP, short epochs)
  eval_torch/      one-vs-rest tables, pictures and manifest with the torch backend
  bundle_<p>/      exported bundles; eval_onnxruntime_<p>/ their one-vs-rest evaluation
  bundle_openvino_<p>/  OpenVINO IR bundles (default int8, calibrated on the run's training samples);
                   eval_openvino_<p>/ their evaluation (skipped with a note when OpenVINO is missing)
  eval_torch/results_calibrations/  per unseen shape, a calibration fitted on its own good parts
                   (train split, n_calibration of them, default rule) before its test split is scored
  pages/           a result page per example part at that operating point (3D cloud, decision, regions)
  report.md        the tables (backends side by side), the operating-point table, pictures and
                   timings; manifest.json

The tiny CLIP is random, so the numbers show the pipeline works end to end (trained prompts +
aligner on one synthetic category transfer to the others), not the paper's accuracy.

"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align3d_rt.cli.numbers import non_negative_int
from align3d_rt.io_utils import sha256_json, write_json_atomic, write_text_atomic
from align3d_rt.runtime.devices import DEVICE_CHOICES
from align3d_rt.vocabulary import IR_PRECISIONS, ONNX_PRECISIONS, words


def register(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser(
        "demo",
        help="offline end-to-end demo: synthetic data, tiny CLIP, train, evaluate (torch + ONNX Runtime), report",
        description="Generates a synthetic MVTec-layout dataset, trains both stages on one category with the tiny "
                    "random CLIP ('align3d-tiny'), evaluates one-vs-rest on the other categories with the torch "
                    "backend, exports ONNX bundles and evaluates them with ONNX Runtime, and writes OUT/report.md.",
    )
    d.add_argument("--out", type=Path, required=True, help="output folder (dataset, run, bundles, report)")
    d.add_argument("--precisions", nargs="+", choices=words(ONNX_PRECISIONS), default=["fp32", "int8"],
                   help="bundle precisions to export and evaluate with ONNX Runtime (default fp32 int8)")
    d.add_argument("--ir-precisions", nargs="*", choices=words(IR_PRECISIONS), default=["int8"],
                   help="OpenVINO IR precisions to export and evaluate (default int8; none: skip; skipped with a "
                        "note when OpenVINO is not installed)")
    d.add_argument("--seed", type=non_negative_int, default=0)
    d.add_argument("--quick", action="store_true", help="smaller dataset and fewer epochs (a smoke run, not a result)")
    d.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="device for evaluation (default auto)")
    d.set_defaults(func=run_demo_cmd)


# What the demo writes at the top of --out (a rerun resumes from them; nothing else is ever mixed in).
DEMO_ENTRIES = ("data", "run", "pages", "logs", "work", "manifest.json", "report.md", "bundle_*", "eval_*")
DEMO_MARKERS = ("data/.demo_data.json", "manifest.json")  # one of them marks an earlier demo


def run_demo_cmd(args: argparse.Namespace) -> int:
    from align3d_rt.cli.out_folder import check_resumable_out

    check_resumable_out(args.out, "demo", DEMO_ENTRIES, DEMO_MARKERS)
    cfg = DemoConfig(out=args.out, precisions=tuple(args.precisions), ir_precisions=tuple(args.ir_precisions),
                     seed=args.seed, device=args.device)
    if args.quick:
        cfg = cfg.quick()
    report = run_demo(cfg)
    print(f"align3d-rt demo: report written to {report}", file=sys.stderr)
    return 0


DEMO_CATEGORIES = ("dome", "ring", "box", "wave", "cylinder")


@dataclass
class DemoConfig:
    """Sizes and epochs of the demo (defaults tuned to finish in ~5 minutes on 2 CPU cores)."""

    out: Path
    categories: tuple[str, ...] = DEMO_CATEGORIES
    train_category: str = "dome"
    n_test_good: int = 4
    n_per_defect: int = 2
    size: tuple[int, int] = (180, 240)
    epochs1: int = 40
    reweight_epochs: int = 10
    epochs2: int = 15
    dpca_epochs: int = 5
    batch_size: int = 4
    precisions: tuple[str, ...] = ("fp32", "int8")
    ir_precisions: tuple[str, ...] = ("int8",)  # OpenVINO IR bundles (export --format openvino)
    calibration_samples: int | None = None  # OpenVINO int8: the export default
    n_calibration: int = 19  # good parts per unseen shape to calibrate on (conformal at 5 % needs 19)
    calibrate_on: str | None = "train"  # the torch eval fits a calibration per shape on this split (None: none)
    seed: int = 0
    eval_batch: int = 4
    progress: bool = True
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def quick(self) -> DemoConfig:
        """A smoke-test sized demo (seconds, not a result)."""
        return dataclasses.replace(self, categories=self.categories[:3], n_test_good=2, n_per_defect=1, size=(96, 128),
                                   epochs1=4, reweight_epochs=1, epochs2=2, dpca_epochs=1, calibration_samples=2)

    def data_identity(self) -> dict[str, Any]:
        return {"categories": list(self.categories), "n_test_good": self.n_test_good, "n_per_defect": self.n_per_defect,
                "size": list(self.size), "seed": self.seed, "train_category": self.train_category,
                "n_calibration": self.n_calibration if self.calibrate_on else 0}


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def generate_data(cfg: DemoConfig) -> Path:
    """The demo dataset (reused when OUT/data already holds the same one)."""
    from align3d_rt.data.synthetic import generate_mvtec_layout

    root = Path(cfg.out) / "data"
    marker = root / ".demo_data.json"
    ident = cfg.data_identity()
    if marker.is_file() and marker.read_text().strip() == sha256_json(ident):
        return root
    # the training shape: one train part (the demo trains on its test split); every other shape: the good
    # parts its operating point is calibrated on (train split, never tested)
    n_cal = cfg.n_calibration if cfg.calibrate_on else 1
    for cats, n_train in (([c for c in cfg.categories if c == cfg.train_category], 1),
                          ([c for c in cfg.categories if c != cfg.train_category], n_cal)):
        if cats:
            generate_mvtec_layout(root, categories=cats, n_train=n_train, n_test_good=cfg.n_test_good,
                                  n_per_defect=cfg.n_per_defect, size=cfg.size, seed=cfg.seed, n_validation=0)
    write_text_atomic(marker, sha256_json(ident) + "\n")
    return root


def train(cfg: DemoConfig, data_root: Path) -> Path:
    from align3d_rt.train.runner import TrainConfig, train_run

    tc = TrainConfig(dataset="synthetic", root=data_root, category=cfg.train_category, out=Path(cfg.out) / "run",
                     clip="align3d-tiny", epochs1=cfg.epochs1, reweight_epochs=cfg.reweight_epochs,
                     epochs2=cfg.epochs2, dpca_epochs=cfg.dpca_epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                     device="cpu", progress=cfg.progress)
    return Path(train_run(tc))


def run_demo(cfg: DemoConfig) -> Path:
    """Run every step; returns the path of report.md."""
    from align3d_rt.eval.protocols import run_protocol
    from align3d_rt.eval.report import build_manifest
    from align3d_rt.export.onnx_export import export_bundle
    from align3d_rt.runtime import registry
    from align3d_rt.runtime.detector import Detector

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    _say(f"1/4 generating synthetic data ({len(cfg.categories)} categories) in {out / 'data'}")
    data_root = generate_data(cfg)
    times["generate data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(f"2/4 training both stages on '{cfg.train_category}' (align3d-tiny, {cfg.epochs1}+{cfg.epochs2} epochs)")
    run_dir = train(cfg, data_root)
    times["train"] = time.perf_counter() - t0

    tables: dict[str, Any] = {}
    evals: dict[str, Any] = {}
    t0 = time.perf_counter()
    reference, deploy = registry.default_backend("run"), registry.default_backend("bundle")
    calibrated = (f" (calibrated per shape on {cfg.n_calibration} good {cfg.calibrate_on} parts)"
                  if cfg.calibrate_on else "")
    _say(f"3/4 one-vs-rest evaluation, {reference} backend{calibrated}")
    evals[reference] = run_protocol(Detector.from_run(run_dir, device=cfg.device), "one-vs-rest", "synthetic",
                                    data_root, out / f"eval_{reference}", batch_size=cfg.eval_batch,
                                    progress=cfg.progress, calibrate_on=cfg.calibrate_on)
    tables[reference] = evals[reference].results
    times[f"eval {reference}"] = time.perf_counter() - t0
    pages: list[tuple[str, str]] = []
    if cfg.calibrate_on:
        t0 = time.perf_counter()
        pages = write_example_pages(cfg, run_dir, data_root, out / f"eval_{reference}" / "results_calibrations",
                                    [r.category for r in evals[reference].results])
        times["result pages"] = time.perf_counter() - t0

    bundles: dict[str, Path] = {}
    for prec in cfg.precisions:
        t0 = time.perf_counter()
        _say(f"4/4 export {prec} bundle + one-vs-rest evaluation with {deploy}")
        bundles[prec] = Path(export_bundle(run_dir, out / f"bundle_{prec}", precision=prec))
        times[f"export {prec}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        label = f"{deploy}-{prec}"
        evals[label] = run_protocol(Detector.from_bundle(bundles[prec], device=cfg.device), "one-vs-rest",
                                    "synthetic", data_root, out / f"eval_{deploy}_{prec}", batch_size=cfg.eval_batch,
                                    progress=cfg.progress)
        tables[label] = evals[label].results
        times[f"eval {label}"] = time.perf_counter() - t0
    notes: list[str] = []
    if cfg.ir_precisions:
        _ir_evaluations(cfg, run_dir, data_root, bundles, evals, tables, times, notes)
    times["total"] = time.perf_counter() - t_all

    manifest = build_manifest(
        evals[reference].manifest["detector"], protocol="one-vs-rest", dataset="synthetic",
        dataset_root=str(data_root.resolve()), demo_config={k: (str(v) if isinstance(v, Path) else v)
                                                            for k, v in dataclasses.asdict(cfg).items()},
        run_dir=str(run_dir.resolve()), bundles={p: str(b.resolve()) for p, b in bundles.items()},
        evaluations={k: str(v.paths["manifest"].resolve()) for k, v in evals.items()}, seconds=times,
    )
    write_json_atomic(out / "manifest.json", manifest)
    report = out / "report.md"
    write_text_atomic(report, render_report(cfg, run_dir, evals, tables, times, notes, pages))
    _say(f"done in {times['total']:.0f} s: {report}")
    return report


def _ir_evaluations(cfg: DemoConfig, run_dir: Path, data_root: Path, bundles: dict[str, Path], evals: dict[str, Any],
                    tables: dict[str, Any], times: dict[str, float], notes: list[str]) -> None:
    """Export OpenVINO IR bundles and evaluate them one-vs-rest with the backend that runs them."""
    from align3d_rt.errors import Align3DError
    from align3d_rt.eval.protocols import run_protocol
    from align3d_rt.export import openvino_export as ovx
    from align3d_rt.export.onnx_export import export_bundle
    from align3d_rt.runtime import registry
    from align3d_rt.runtime.detector import Detector

    fmt = ovx.EXPORT_FORMATS[1]
    backend = registry.backends_for_format(fmt)[0]
    try:
        ovx.import_openvino()
    except Align3DError as err:
        notes.append(f"{backend} evaluation skipped: {err}")
        _say(notes[-1])
        return
    for prec in cfg.ir_precisions:
        t0 = time.perf_counter()
        _say(f"4/4 export {fmt} {prec} bundle + one-vs-rest evaluation with {backend}")
        key = f"{fmt}-{prec}"
        bundles[key] = Path(export_bundle(run_dir, Path(cfg.out) / f"bundle_{fmt}_{prec}", precision=prec, fmt=fmt,
                                          calibration_samples=cfg.calibration_samples))
        times[f"export {key}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        label = f"{backend}-{prec}"
        det = Detector.from_bundle(bundles[key], backend=backend, device="cpu")
        evals[label] = run_protocol(det, "one-vs-rest", "synthetic", data_root,
                                    Path(cfg.out) / f"eval_{backend}_{prec}", batch_size=cfg.eval_batch,
                                    progress=cfg.progress)
        tables[label] = evals[label].results
        times[f"eval {label}"] = time.perf_counter() - t0
        notes.append(f"{label}: OpenVINO IR {prec} computed in {det.info.get('compute_precision', '?')} on "
                     f"{det.info.get('openvino_device', 'CPU')}.")


def write_example_pages(cfg: DemoConfig, run_dir: Path, data_root: Path, cal_dir: Path,
                        categories: list[str]) -> list[tuple[str, str]]:
    """OUT/pages/: per tested shape, the result page of its first good and first defective test part,
    decided with that shape's calibration, and index.html. Returns (key, page path relative to OUT)."""
    from urllib.parse import quote

    from align3d_rt.cli.infer_page import write_result_page
    from align3d_rt.data.readers import list_samples
    from align3d_rt.eval.page import write_index_page
    from align3d_rt.runtime.detector import Detector

    pages_dir = Path(cfg.out) / "pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    detector = Detector.from_run(run_dir, device=cfg.device)
    entries: list[dict[str, Any]] = []
    with detector:
        for cat in categories:
            detector.calibrate_with(cal_dir / f"{cat}.json")
            refs = list_samples("synthetic", data_root, cat, "test")
            chosen = [r for r in refs if r.label_name == "good"][:1] + [r for r in refs if r.label_name != "good"][:1]
            for ref, res in detector.score_stream(chosen, load=lambda r: r.load(), keep_render=True):
                if isinstance(res, Exception):
                    _say(f"result page skipped: {res}")
                    continue
                key = f"{cat}_{ref.label_name}_{ref.path.stem}"
                entry = {"object_score": float(res.object_score), "label": ref.label_name,
                         **res.decision.to_json()}
                name = write_result_page(pages_dir, key, res, entry, detector.fusion_weight)
                entries.append({"key": key, "href": quote(name), **{k: entry[k] for k in (
                    "object_score", "decision", "object_score_normalized", "num_regions")}})
    write_index_page(pages_dir / "index.html", entries, title="align3d_rt demo: example parts at the operating point")
    return [(e["key"], f"pages/{e['href']}") for e in entries]


def render_report(cfg: DemoConfig, run_dir: Path, evals: dict[str, Any], tables: dict[str, Any],
                  times: dict[str, float], notes: list[str] | None = None,
                  pages: list[tuple[str, str]] | None = None) -> str:
    """report.md: settings, the side-by-side table, each backend's full table, the operating point,
    pictures, timings."""
    from align3d_rt.eval.report import markdown_table, operating_section, side_by_side_markdown

    out = Path(cfg.out)
    first = next(iter(evals.values()))
    man = first.manifest
    lines = [
        "# align3d_rt demo: zero-shot one-vs-rest on synthetic data",
        "",
        f"Trained on **{cfg.train_category}** (test split, stage 1 {cfg.epochs1} epochs, "
        f"stage 2 {cfg.epochs2} epochs), "
        f"tested on {', '.join(c for c in cfg.categories if c != cfg.train_category)}. "
        f"CLIP: `{man.get('clip_name')}` (random tiny model, weights id `{man.get('clip_weights_id')}`); views preset "
        f"`{man.get('views_preset')}`, renderer `{man.get('renderer')}`, fusion weight {man.get('fusion_weight')}.",
        "",
        "The CLIP here is a tiny random network, so these numbers show that the whole pipeline works and that the "
        "trained prompts/aligner transfer across categories; they are not the paper's accuracy.",
        "",
        "Metrics in percent. O-R / O-A: object AUROC / AP. P-R / P-P: point AUROC / AUPRO the reference way "
        "(336 grid, blur sigma 4, background included); (pt): valid points only, no blur.",
        "",
        "## Backends side by side",
        "",
        side_by_side_markdown(tables),
    ]
    if notes:
        lines += ["", *[f"- {n}" for n in notes], ""]
    for label, res in tables.items():
        lines += [f"## {label}", "", markdown_table(res)]
    first_label = next(iter(tables))
    op = operating_section(tables[first_label])
    if op:
        lines += [f"## Decisions at the operating point ({first_label})", "",
                  f"Per tested shape, a calibration fitted on {cfg.n_calibration} good parts of that shape (its "
                  f"{cfg.calibrate_on} split, never tested; default rule: conformal, target false-reject 5 %), "
                  f"then its test split decided with it. With {cfg.n_test_good} good test parts per shape the "
                  "measured false-reject rate is coarse; the 90 % range says which counts the rule allows. The "
                  "random tiny CLIP separates little, so expect bad parts to be accepted: the point is the "
                  "machinery (calibrations in `eval_torch/results_calibrations/`).", op]
    if pages:
        lines += ["Result pages (3D cloud by normalised score, decision, regions, views; open offline): "
                  "[index](pages/index.html): " + ", ".join(f"[{k}]({href})" for k, href in pages), ""]
    lines += ["## Pictures", ""]
    for label, ev in evals.items():
        sheet = ev.paths.get("contact_sheet")
        if sheet is not None:
            lines += [f"{label}: one view per example, fused map over the render, ground truth outlined in white.", "",
                      f"![{label} examples]({Path(sheet).relative_to(out).as_posix()})", ""]
            break
    lines += ["Per-example pictures (all views): " + ", ".join(
        f"`{Path(ev.paths['manifest']).parent.relative_to(out).as_posix()}/results_examples/`"
        for ev in evals.values()), ""]
    lines += ["## Time (seconds)", "", "| step | s |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in times.items()]
    lines += ["", "Run directory: "
                  f"`{run_dir.relative_to(out).as_posix() if run_dir.is_relative_to(out) else run_dir}`; "
              "everything used is recorded in `manifest.json` and each evaluation's own manifest.", ""]
    return "\n".join(lines)
