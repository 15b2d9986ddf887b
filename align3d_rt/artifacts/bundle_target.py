"""Where ``export`` may write a bundle: never over the run it exports, never over folders it did not write."""
from __future__ import annotations

from pathlib import Path

from align3d_rt.artifacts.bundle import foreign_in_bundle, is_bundle_dir, own_bundle
from align3d_rt.errors import BundleError
from align3d_rt.io_utils import replaceable_folder


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
    if not replaceable_folder(out, own_bundle):
        raise BundleError(f"{out}: exists and is not a bundle align3d-rt wrote (no bundle manifest.json); "
                          f"it is never replaced: choose a new or empty --out")
    if Path(out).is_dir() and is_bundle_dir(Path(out)) and not overwrite:
        raise BundleError(f"{out}: already holds a bundle; pass --overwrite to replace it")
