"""Where ``export`` may write a bundle: never over the run it exports, never over folders it did not write."""
from __future__ import annotations

from pathlib import Path

from align3d_rt.errors import BundleError
from align3d_rt.io_utils import read_json


def is_bundle_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding a manifest.json of this tool's bundle format."""
    from align3d_rt.artifacts.bundle import FORMAT_NAME, MANIFEST_NAME

    try:
        manifest = read_json(Path(path) / MANIFEST_NAME)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME


def bundle_files(path: Path) -> set[str]:
    """The files a bundle's manifest says are its own (its ``files`` and manifest.json itself)."""
    from align3d_rt.artifacts.bundle import MANIFEST_NAME

    try:
        files = read_json(Path(path) / MANIFEST_NAME).get("files")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return set()
    return {MANIFEST_NAME, *(f for f in files if isinstance(f, str))} if isinstance(files, dict) else {MANIFEST_NAME}


def foreign_in_bundle(path: Path) -> list[str]:
    """Entries of the bundle folder ``path`` its manifest does not list (the user's; never deleted)."""
    from align3d_rt.io_utils import foreign_entries

    return foreign_entries(path, bundle_files(path))


def replaceable(path: Path) -> bool:
    """A path a bundle may be staged onto: absent, an empty folder, or a bundle holding only its own files."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return True
    return path.is_dir() and not path.is_symlink() and (
        not any(path.iterdir()) or (is_bundle_dir(path) and not foreign_in_bundle(path)))


def check_export_target(run: Path, out: Path, overwrite: bool) -> None:
    """Refuse (one line) an ``--out`` that equals or lies inside/above ``--run``, is not a bundle, or is an
    existing bundle without ``overwrite``."""
    run_abs, out_abs = Path(run).resolve(), Path(out).resolve()
    if out_abs == run_abs or run_abs in out_abs.parents:
        raise BundleError(f"{out}: is or lies inside the run directory {run}; choose an --out outside it")
    if out_abs in run_abs.parents:
        raise BundleError(f"{out}: holds the run directory {run}; choose another --out")
    if Path(out).is_symlink() or (Path(out).exists() and not Path(out).is_dir()):
        raise BundleError(f"{out}: exists and is not a folder; choose another --out")
    if Path(out).is_dir() and is_bundle_dir(Path(out)) and foreign_in_bundle(Path(out)):
        foreign = foreign_in_bundle(Path(out))
        raise BundleError(f"{out}: the bundle folder also holds {len(foreign)} file(s) its manifest does not list "
                          f"(e.g. {foreign[0]}); they are never deleted: move them, or choose another --out")
    if not replaceable(Path(out)):
        raise BundleError(f"{out}: exists and is not a bundle align3d-rt wrote (no bundle manifest.json); "
                          f"it is never replaced: choose a new or empty --out")
    if Path(out).is_dir() and is_bundle_dir(Path(out)) and not overwrite:
        raise BundleError(f"{out}: already holds a bundle; pass --overwrite to replace it")
