"""Format-version upgrades shared by every artifact: one step function per old version."""
from __future__ import annotations

from typing import Any, Callable

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


def upgrade(doc: dict[str, Any], current: int, steps: dict[int, Upgrade], fail: Callable[[str], Exception],
            what: str, how_to_renew: str) -> dict[str, Any]:
    """Apply ``steps[v]`` (v -> v+1) until ``doc['format_version'] == current``.

    A version with no step (too old, or newer than this align3d_rt) raises ``fail(problem)``.
    """
    version = doc.get("format_version")
    while version != current:
        if not isinstance(version, int) or version > current or version not in steps:
            newer = isinstance(version, int) and version > current
            raise fail(f"{what} format version {version!r}, this align3d_rt reads version {current}; "
                       f"{'upgrade align3d_rt, or ' if newer else ''}{how_to_renew}")
        doc = steps[version](dict(doc))
        doc["format_version"] = version = version + 1
    return doc
