"""What a Detector runs: a frozen record, written to scores.json / manifests through ``to_dict``."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from align3d_rt.vocabulary import StrEnum

# Keys of to_dict(), in order, and which a run or a bundle detector always writes (even when None).
_ORDER = ("source", "run_dir", "bundle_dir", "backend", "device", "precision", "bundle_hash", "clip_name",
          "clip_weights_id", "seeds", "run_config", "bundle_manifest", "run_id")
_ALWAYS = {
    "run": ("source", "run_dir", "backend", "device", "precision", "clip_name", "clip_weights_id", "seeds",
            "run_config"),
    "bundle": ("source", "bundle_dir", "backend", "device", "precision", "bundle_hash", "clip_name",
               "clip_weights_id", "seeds", "bundle_manifest"),
}
# Too large for a summary: kept for calibration and protocols, left out of ``describe``.
ORIGIN_KEYS = ("run_config", "bundle_manifest")


@dataclass(frozen=True)
class DetectorInfo:
    """The detector's source (run or bundle), backend, device, precision and model identity.

    ``runner``: what the active runner reported (e.g. ``compute_precision``), in its order; set by
    ``with_runner`` after activation. Read by attribute, or by key (``info["precision"]``,
    ``info.get("compute_precision")``) over ``to_dict()``."""

    source: str | None = None  # 'run', 'bundle' or another origin (e.g. 'triton')
    backend: str | None = None
    device: str | None = None
    precision: str | None = None
    run_dir: str | None = None
    bundle_dir: str | None = None
    bundle_hash: str | None = None
    clip_name: str | None = None
    clip_weights_id: str | None = None
    seeds: Any = None
    run_config: Mapping[str, Any] | None = None
    bundle_manifest: Mapping[str, Any] | None = None
    run_id: str | None = None
    runner: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DetectorInfo:
        """From the keys of ``to_dict`` (others become runner entries)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"runner"}
        base = cls(**{k: v for k, v in values.items() if k in known})
        return base.with_runner({k: v for k, v in values.items() if k not in known})

    def with_runner(self, reported: Mapping[str, Any]) -> DetectorInfo:
        """A copy with what the runner reported: a known key (e.g. ``precision``) replaced, others added."""
        known = {f.name for f in dataclasses.fields(self)} - {"runner"}
        fields = {k: v for k, v in reported.items() if k in known}
        extra = dict(self.runner)
        extra.update({k: v for k, v in reported.items() if k not in known})
        return dataclasses.replace(self, **fields, runner=tuple(extra.items()))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: a run/bundle detector's keys always, others when set; then the runner's entries."""
        always = _ALWAYS.get(str(self.source), ())
        out = {k: getattr(self, k) for k in _ORDER if k in always or getattr(self, k) is not None}
        out.update(self.runner)
        return {k: str(v) if isinstance(v, StrEnum) else v for k, v in out.items()}

    @property
    def compute_precision(self) -> str | None:
        return self.get("compute_precision")

    # read by key, as the dict it replaces
    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()
