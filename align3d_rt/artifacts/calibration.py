"""The calibration file: one hash-protected JSON object per product (docs/runtime-spec.md 13.2).

This module owns the format (torch-free): ``Calibration.to_dict``/``from_dict``, ``save_calibration``
(atomic), ``load_calibration`` (every refusal of 13.2, one line ``PATH: problem``, in the spec's
order) and ``check_source`` (a calibration is tied to one bundle's ``manifest_sha256`` or one run's
``run_id``). Fitting the thresholds lives in ``align3d_rt.eval.calibration``; applying them in
``align3d_rt.runtime.decisions``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from align3d_rt.artifacts.bundle import canonical_digest
from align3d_rt.errors import Align3DError
from align3d_rt.io_utils import read_json, sha256_file, write_text_atomic

CALIBRATION_FORMAT = "align3d_rt.calibration"
CALIBRATION_VERSION = 1
DIGEST_KEY = "calibration_sha256"
SCORING_NAMES = ("default", "reference")  # "default" = our scoring (section 8), "reference" = section 12
SOURCE_KINDS = {"bundle": "manifest_sha256", "run": "run_id"}
RULES = ("conformal", "pac", "f1", "false-accept")
DEFAULT_MIN_POINTS = 10
DEFAULT_SPACING_FACTOR = 2.5


class CalibrationError(Align3DError):
    """A calibration file is unreadable, edited, inconsistent, or for another bundle/run."""


@dataclass(frozen=True)
class ThresholdSet:
    """One threshold with its normalisation range; ``rank`` = k of x_(k) (None for f1/false-accept).

    ``extras``: further recorded numbers (object: ``false_reject_bound``, ``false_reject_upper_90``)."""

    threshold: float
    lo: float
    hi: float
    rank: int | None = None
    extras: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extras)
        out.update(threshold=float(self.threshold), lo=float(self.lo), hi=float(self.hi),
                   rank=None if self.rank is None else int(self.rank))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdSet:
        extras = {k: v for k, v in data.items() if k not in ("threshold", "lo", "hi", "rank")}
        rank = data.get("rank")
        return cls(float(data["threshold"]), float(data["lo"]), float(data["hi"]),
                   None if rank is None else int(rank), extras)


@dataclass(frozen=True)
class Calibration:
    """A loaded (or freshly fitted) calibration; ``sha256`` is its ``calibration_sha256``."""

    product: str
    source: dict[str, Any]
    scoring: str
    dataset: str
    category: str
    rule: dict[str, Any]
    n_good: int
    n_bad: int
    object: ThresholdSet
    point: ThresholdSet
    min_points: int = DEFAULT_MIN_POINTS
    spacing_factor: float = DEFAULT_SPACING_FACTOR
    good_object_scores: tuple[float, ...] = ()
    created: str = ""
    software: dict[str, Any] = field(default_factory=dict, hash=False)
    sha256: str = ""

    def body(self) -> dict[str, Any]:
        """The file's object without ``calibration_sha256`` (plain JSON types)."""
        return {
            "format": CALIBRATION_FORMAT,
            "format_version": CALIBRATION_VERSION,
            "product": self.product,
            "created": self.created,
            "software": dict(self.software),
            "source": dict(self.source),
            "scoring": self.scoring,
            "dataset": self.dataset,
            "category": self.category,
            "rule": dict(self.rule),
            "n_good": int(self.n_good),
            "n_bad": int(self.n_bad),
            "object": self.object.to_dict(),
            "point": self.point.to_dict(),
            "regions": {"min_points": int(self.min_points), "spacing_factor": float(self.spacing_factor)},
            "good_object_scores": [float(x) for x in self.good_object_scores],
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole file object (with ``calibration_sha256`` = ``self.sha256``)."""
        return dict(self.body(), **{DIGEST_KEY: self.sha256})

    def sealed(self) -> Calibration:
        """This calibration with its digest computed (what ``save_calibration`` writes)."""
        return dataclasses.replace(self, sha256=calibration_digest(self.body()))

    @property
    def source_hash(self) -> str:
        return str(self.source.get(SOURCE_KINDS.get(str(self.source.get("kind")), ""), ""))

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | os.PathLike[str] = "calibration") -> Calibration:
        """Validate the fields (13.2 from the thresholds on, then the other fields) and build it.

        The format, version and digest are checked by ``load_calibration`` before this."""
        _check_fields(data, Path(path))
        regions = data["regions"]
        return cls(
            product=data["product"], source=dict(data["source"]), scoring=data["scoring"],
            dataset=data["dataset"], category=data["category"], rule=dict(data["rule"]),
            n_good=int(data["n_good"]), n_bad=int(data["n_bad"]),
            object=ThresholdSet.from_dict(data["object"]), point=ThresholdSet.from_dict(data["point"]),
            min_points=int(regions["min_points"]), spacing_factor=float(regions["spacing_factor"]),
            good_object_scores=tuple(float(x) for x in data["good_object_scores"]),
            created=str(data.get("created", "")), software=dict(data.get("software") or {}),
            sha256=str(data.get(DIGEST_KEY, "")),
        )


def calibration_digest(body: dict[str, Any]) -> str:
    """sha256 of the object without its top-level ``calibration_sha256``, by the manifest's canonical
    rule (docs/runtime-spec.md 2.3). Raises ValueError on NaN or infinite numbers."""
    return canonical_digest(body, DIGEST_KEY)


def _fail(path: str | os.PathLike[str], problem: str) -> CalibrationError:
    return CalibrationError(f"{path}: {problem}")


def _is_number(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_fields(data: dict[str, Any], path: Path) -> None:
    """Refusals of 13.2 after the digest, in order; then the other fields' shapes."""
    for section in ("object", "point"):
        block = data.get(section)
        if not isinstance(block, dict):
            raise _fail(path, f"{section} thresholds are missing")
        for key in ("threshold", "lo", "hi"):
            if key not in block:
                raise _fail(path, f"{section}.{key} is missing")
            if not _is_number(block[key]):
                raise _fail(path, f"{section}.{key} is not a number ({block[key]!r})")
            if not math.isfinite(block[key]):
                raise _fail(path, f"{section}.{key} is not finite ({block[key]!r})")
    for section in ("object", "point"):
        t, lo, hi = (float(data[section][k]) for k in ("threshold", "lo", "hi"))
        if not lo < hi or not lo <= t <= hi:
            raise _fail(path, f"inverted or degenerate {section} thresholds (threshold {t!r}, lo {lo!r}, hi {hi!r}: "
                              "needs lo < hi and lo <= threshold <= hi); re-run align3d-rt calibrate")
    regions = data.get("regions")
    if not isinstance(regions, dict):
        raise _fail(path, "regions settings are missing")
    mp, sf = regions.get("min_points"), regions.get("spacing_factor")
    if not isinstance(mp, int) or isinstance(mp, bool) or mp < 1:
        raise _fail(path, f"regions.min_points must be an integer >= 1 (got {mp!r})")
    if not _is_number(sf) or not math.isfinite(sf) or sf <= 0:
        raise _fail(path, f"regions.spacing_factor must be a finite number > 0 (got {sf!r})")
    _check_other_fields(data, path)


def _check_other_fields(data: dict[str, Any], path: Path) -> None:
    def bad(key: str, why: str) -> CalibrationError:
        return _fail(path, f"bad calibration field {key!r} ({why})")

    if not isinstance(data.get("product"), str) or not data["product"]:
        raise bad("product", "a non-empty string")
    source = data.get("source")
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind not in SOURCE_KINDS or not isinstance(source.get(SOURCE_KINDS[kind]), str):  # type: ignore[union-attr]
        raise bad("source", "kind 'bundle' with manifest_sha256, or kind 'run' with run_id")
    if data.get("scoring") not in SCORING_NAMES:
        raise bad("scoring", f"one of {', '.join(SCORING_NAMES)}")
    for key in ("dataset", "category"):
        if not isinstance(data.get(key), str):
            raise bad(key, "a string")
    rule = data.get("rule")
    if not isinstance(rule, dict) or rule.get("name") not in RULES:
        raise bad("rule", f"an object whose name is one of {', '.join(RULES)}")
    for key in ("n_good", "n_bad"):
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(key, "an integer >= 0")
    for section in ("object", "point"):
        rank = data[section].get("rank")
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool)):
            raise bad(f"{section}.rank", "an integer or null")
    scores = data.get("good_object_scores")
    if not isinstance(scores, list) or not all(_is_number(x) and math.isfinite(x) for x in scores):
        raise bad("good_object_scores", "a list of finite numbers")


def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError) as err:
        raise _fail(path, f"unreadable calibration ({type(err).__name__}: {err})") from None


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read and validate a calibration file; every refusal of 13.2 is one line ``PATH: problem``."""
    p = Path(path)
    if p.is_dir():
        raise _fail(p, "unreadable calibration (a folder, not a calibration file)")
    data = _read_json(p)
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise _fail(p, f"not an {CALIBRATION_FORMAT} file")
    version = data.get("format_version")
    if version != CALIBRATION_VERSION or isinstance(version, bool):
        newer = "upgrade align3d_rt, or " if isinstance(version, int) and version > CALIBRATION_VERSION else ""
        raise _fail(p, f"calibration format version {version!r}, this align3d_rt reads version "
                       f"{CALIBRATION_VERSION}; {newer}re-run align3d-rt calibrate")
    try:
        digest = calibration_digest(data)
    except ValueError:
        raise _fail(p, "calibration holds NaN or infinite numbers (the file was edited or is corrupt); "
                       "re-run align3d-rt calibrate") from None
    if data.get(DIGEST_KEY) != digest:
        raise _fail(p, "calibration checksum mismatch (the file was edited or is corrupt); re-run align3d-rt calibrate")
    return Calibration.from_dict(data, p)


def is_calibration_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file whose JSON names the calibration format (what ``--overwrite`` may replace)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        data = read_json(p)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == CALIBRATION_FORMAT


def check_target(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse (one line) a path ``save_calibration`` must not write: a folder, an existing file without
    ``overwrite``, an existing file that is not a calibration, a parent that is a file or read-only."""
    p = Path(path)
    if p.is_dir():
        raise _fail(p, "is a folder; --out names the calibration file to write")
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise _fail(p, "exists; pass --overwrite to replace it, or choose another --out")
        if p.is_symlink() or not is_calibration_file(p):
            raise _fail(p, f"exists and is not an {CALIBRATION_FORMAT} file; never replaced")
    probe = p.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise _fail(p, f"cannot create the calibration file ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _fail(p, f"cannot write the calibration file ({probe} is not writable)")
    return p


def save_calibration(cal: Calibration, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``cal`` (sealed with its digest) atomically; an existing file is replaced only with
    ``overwrite=True`` and only when it is a calibration file. Returns the path."""
    p = check_target(path, overwrite)
    sealed = cal.sealed()
    data = sealed.to_dict()
    Calibration.from_dict(data, p)  # never write what load_calibration would refuse
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    existed = p.exists()
    try:  # a path that was free is never taken from another run that wrote it meanwhile
        write_text_atomic(p, text, replace=existed)
    except FileExistsError:
        raise _fail(p, "was written by another run meanwhile; not replaced (pass --overwrite to replace it)") from None
    return p


def local_time() -> str:
    """Local time as the file's ``created`` (``%Y-%m-%dT%H:%M:%S%z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---- sources --------------------------------------------------------------------------------------
def bundle_source(manifest: dict[str, Any], path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The source of a bundle: ``{"kind": "bundle", "manifest_sha256": ...}`` (+ informative path)."""
    out: dict[str, Any] = {"kind": "bundle", "manifest_sha256": str(manifest.get("manifest_sha256", ""))}
    if path is not None:
        out["path"] = str(path)
    return out


def run_id(run_dir: str | os.PathLike[str], clip_weights_id: str) -> str:
    """Identity of a run's weights: sha256 over the sha256 of each final weight file (sorted by name)
    and the CLIP weights id, as canonical JSON."""
    from align3d_rt.artifacts.run_dir import FINAL_FILES

    root = Path(run_dir)
    files = {name: sha256_file(root / name) for name in sorted(FINAL_FILES)}
    text = json.dumps({"clip_weights_id": str(clip_weights_id), "files": files}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def run_source(run_dir: str | os.PathLike[str], clip_weights_id: str) -> dict[str, Any]:
    """The source of a run: ``{"kind": "run", "run_id": ...}`` (+ informative path)."""
    return {"kind": "run", "run_id": run_id(run_dir, clip_weights_id), "path": str(run_dir)}


def check_source(cal: Calibration, source: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a calibration made for another bundle or run (one line naming both hashes)."""
    kind = str(source.get("kind"))
    mine = str(source.get(SOURCE_KINDS.get(kind, ""), ""))
    if cal.source.get("kind") == kind and cal.source_hash == mine:
        return
    theirs_kind = str(cal.source.get("kind"))
    raise _fail(path, f"calibration is for {theirs_kind} {cal.source_hash}, this {kind} is {mine}")


def scoring_name(reference_scoring: Any) -> str:
    """The file's ``scoring`` for a detector's scoring mode (None = ours = 'default')."""
    return "default" if reference_scoring is None else "reference"
