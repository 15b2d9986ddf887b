"""Benchmark rows: one per (backend, variant) of the registry, plus the C++ inspector when it is built.

No backend is named here: rows come from ``registry.list_backends()`` and each spec's ``bench_variants()``.
A row that cannot run on this machine (no GPU, library missing) is kept as skipped, with the reason.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from align3d_rt.errors import Align3DError, BackendUnavailable
from align3d_rt.runtime import registry

INSPECTOR_ROW = "cpp:inspector"


@dataclass
class Row:
    """What one row measures and how its source is made."""

    row_id: str          # 'backend:variant' (or the inspector's id)
    backend: str         # registry name ('' for the inspector)
    variant: str
    label: str
    source: str          # 'run', 'bundle' or 'inspector'
    device: str          # 'cpu' or 'cuda'
    precision: str
    options: dict[str, Any] = field(default_factory=dict)
    export_format: str = ""
    export_options: dict[str, Any] = field(default_factory=dict)
    engine: bool = False
    note: str = ""
    skip_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        return cls(**data)


def all_rows(device: str, gpu: bool, inspector: Path | None, inspector_precision: str = "int8",
             inspector_performance_hint: str = "LATENCY") -> list[Row]:
    """Every row the registry describes (and the inspector's), with a skip reason where it cannot run here.

    ``device``: where rows that can run on either device run ('cpu' or 'cuda'); ``gpu``: a CUDA GPU is usable."""
    rows = []
    for name in registry.list_backends():
        spec = registry.get(name)
        for v in spec.bench_variants():
            # a GPU variant of a host-buffer backend (e.g. a CUDA execution provider) still runs on device 'cpu'
            dev = "cuda" if "cuda" in spec.devices and (v.needs_gpu or device == "cuda" or "cpu" not in spec.devices) \
                else "cpu"
            row = Row(f"{name}:{v.key}", name, v.key, f"{name} {v.label}", spec.source, dev, v.precision,
                      dict(v.options), spec.formats[0] if spec.formats else "", dict(v.export_options), v.engine,
                      v.note)
            if (v.needs_gpu or dev == "cuda") and not gpu:
                row.skip_reason = "needs a CUDA GPU; none is usable here"
            else:
                try:
                    spec.load()
                except BackendUnavailable as err:
                    row.skip_reason = str(err)
            rows.append(row)
    rows.append(inspector_row(inspector, inspector_precision, inspector_performance_hint))
    return rows


def inspector_row(binary: Path | None, precision: str, performance_hint: str = "LATENCY") -> Row:
    """The C++ inspector on the bundle the Python OpenVINO row of ``precision`` runs (same export options, so
    the same bundle folder), at its default compute precision (auto: bf16 where the CPU has it)."""
    from align3d_rt.eval.bench.inspector import FORMAT

    same = [v for v in registry.get(FORMAT).bench_variants() if v.precision == precision]
    hint = "" if performance_hint == "LATENCY" else f", {performance_hint}"
    row = Row(INSPECTOR_ROW, "", "inspector", f"C++ inspector (align3d-inspect, {precision} IR, auto hint{hint})",
              "inspector", "cpu", precision, {"performance_hint": performance_hint}, export_format=FORMAT,
              export_options=dict(same[-1].export_options) if same else {}, note=str(binary or ""))
    if binary is None:
        row.skip_reason = ("no built align3d-inspect found (set ALIGN3D_INSPECT to the binary, or build it into "
                           "build/cpp with CMake)")
    return row


def select_rows(rows: list[Row], wanted: list[str] | None) -> list[Row]:
    """Rows whose id or backend is in ``wanted`` (all when None); an unknown name is an error."""
    if not wanted:
        return rows
    known = {r.row_id for r in rows} | {r.backend for r in rows if r.backend}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise Align3DError(f"--rows: unknown row(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(r.row_id for r in rows)}"
                           f" or a backend name")
    return [r for r in rows if r.row_id in wanted or r.backend in wanted]


# ---- sources: the run directory and the bundles the rows run -------------------------------------
def ensure_run(workdir: Path, clip: str, run: Path | None) -> Path:
    """The given run, or a random-weights run of ``clip`` under workdir (made once, reused)."""
    if run is not None:
        return run
    from align3d_rt.artifacts.run_dir import CONFIG
    from align3d_rt.eval.bench.inputs import MVTEC_SETTINGS
    from align3d_rt.train.random_run import random_run_dir

    path = workdir / f"run_{clip}"
    if not (path / CONFIG).is_file():
        random_run_dir(path, clip=clip, clip_weights="random", dataset=MVTEC_SETTINGS[0], category=MVTEC_SETTINGS[1])
    return path


def bundle_dir(workdir: Path, run: Path, clip: str, fmt: str, precision: str) -> Path:
    stem = clip if run.name == f"run_{clip}" else run.name
    return workdir / "bundles" / f"{stem}_{fmt}_{precision}"


def ensure_bundle(workdir: Path, run: Path, clip: str, fmt: str, precision: str,
                  export_options: dict[str, Any] | None = None) -> tuple[Path, float]:
    """(bundle dir, export seconds; 0 when reused): exported from ``run`` once, kept under workdir/bundles."""
    from align3d_rt.artifacts.bundle import MANIFEST_NAME

    target = bundle_dir(workdir, run, clip, fmt, precision)
    if (target / MANIFEST_NAME).is_file():
        return target, 0.0
    from align3d_rt.export.onnx_export import export_bundle

    t0 = time.perf_counter()
    export_bundle(run, target, precision=precision, fmt=fmt, **(export_options or {}))
    return target, time.perf_counter() - t0


def build_detector(row: Row, workdir: Path, clip: str, run: Path | None) -> tuple[Any, dict[str, Any]]:
    """The Detector of a registry row and what preparing its source cost (export, engine build)."""
    from align3d_rt.runtime.detector import Detector

    run_dir = ensure_run(workdir, clip, run)
    prep: dict[str, Any] = {}
    if row.source == "run":
        return Detector.from_run(run_dir, backend=row.backend, device=row.device, **row.options), prep
    bundle, prep["export_s"] = ensure_bundle(workdir, run_dir, clip, row.export_format, row.precision,
                                             row.export_options)
    prep["bundle"] = str(bundle)
    if row.engine:
        from align3d_rt.export.tensorrt_build import build_engine

        t0 = time.perf_counter()
        prep["engine"] = str(build_engine(bundle))
        prep["engine_build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    detector = Detector.from_bundle(bundle, backend=row.backend, device=row.device, **row.options)
    prep["load_s"] = time.perf_counter() - t0  # hash check (+ on openvino the IR compile, spec 2.4)
    return detector, prep
