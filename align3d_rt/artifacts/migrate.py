"""Format-version upgrades shared by every artifact: one step function per old version."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]

# Why run format 1 and bundle formats 1-2 are refused rather than upgraded.
ALIGNER_CHANGE = ("feeds the aligner unnormalised CLIP features; since run format 2 / bundle format 3 the aligner "
                  "L2-normalises its inputs and outputs as the reference does, and old weights cannot be converted "
                  "numerically")


def upgrade(doc: dict[str, Any], current: int, steps: dict[int, Upgrade], fail: Callable[[str], Exception],
            what: str, how_to_renew: str, obsolete: dict[int, str] | None = None) -> dict[str, Any]:
    """Apply ``steps[v]`` (v -> v+1) until ``doc['format_version'] == current``.

    A version in ``obsolete`` (version -> why it cannot be upgraded) raises ``fail`` naming the reason;
    a version with no step (too old, or newer than this align3d_rt) raises ``fail(problem)``.
    """
    version = doc.get("format_version")
    if obsolete and isinstance(version, int) and version in obsolete:
        raise fail(f"{what} format version {version} {obsolete[version]}; {how_to_renew}")
    while version != current:
        if not isinstance(version, int) or version > current or version not in steps:
            newer = isinstance(version, int) and version > current
            raise fail(f"{what} format version {version!r}, this align3d_rt reads version {current}; "
                       f"{'upgrade align3d_rt, or ' if newer else ''}{how_to_renew}")
        doc = steps[version](dict(doc))
        doc["format_version"] = version = version + 1
    return doc
