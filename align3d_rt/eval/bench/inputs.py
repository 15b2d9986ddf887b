"""The clouds a benchmark scores, as files on disk: generated at the real sizes or taken from a dataset root.

Two kinds, as in the paper's evaluation:
  mvtec   organized xyz .tiff scans (336x336: the grid size after MVTec 3D-AD preprocessing; real scans
          are ~800x800, so loading them costs more than here), preprocessed to the 336x336 grid
          on load (background plane + DBSCAN; cached on disk after the first time);
  real3d  unorganized .pcd clouds of exactly 112,896 points (the Real3D-AD resampling size).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.errors import Align3DError, input_error

MVTEC_SCAN_SIZE = (336, 336)  # real scans are ~800x800; denser synthetic scans make DBSCAN costly (GBs)
MVTEC_SHAPE = "dome"          # generated object (align3d_rt.data.synthetic_shapes)
MVTEC_SETTINGS = ("mvtec3d", "bagel")  # render settings (point size, 9 views) of an MVTec 3D-AD class
REAL3D_SHAPE = "torus"
KINDS = ("mvtec", "real3d")


@dataclass
class CloudSet:
    """One kind of cloud: the files, the dataset/category their render settings come from, how they were made."""

    kind: str
    files: list[tuple[Path, str]]   # (file, output key)
    dataset: str
    category: str
    origin: str
    meta: dict[str, Any] = field(default_factory=dict)

    def loader(self, use_cache: bool = True) -> Callable[[tuple[Path, str]], Any]:
        """load((path, key)) -> PointCloudSample, as ``align3d-rt infer`` reads files (``use_cache`` for .tiff)."""
        from align3d_rt.data.readers import load_point_file
        from align3d_rt.data.real3d import NUM_POINTS

        dataset, category = self.dataset, self.category

        def load(item: tuple[Path, str]) -> Any:
            sample = load_point_file(item[0], num_points=NUM_POINTS if dataset == "real3d" else None,
                                     use_cache=use_cache)
            if sample.num_points == 0:
                raise input_error(item[0], "no valid points")
            sample.dataset = dataset
            sample.category = sample.category or category
            return sample

        return load


def generate_mvtec(folder: Path, n: int, size: tuple[int, int] = MVTEC_SCAN_SIZE, seed: int = 0) -> CloudSet:
    """``n`` organized scans (xyz .tiff, ``size``) of a generated object on a tilted background plane."""
    import tifffile

    from align3d_rt.data.synthetic import render_mvtec_sample
    from align3d_rt.io_utils import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = folder / f"mvtec_{i:03d}.tiff"
        if not path.is_file():
            xyz, _, _ = render_mvtec_sample(MVTEC_SHAPE, None if i % 2 == 0 else "bump", size,
                                            np.random.default_rng(seed + i))
            with atomic_path(path) as tmp:
                tifffile.imwrite(tmp, xyz)
        files.append((path, path.stem))
    return CloudSet("mvtec", files, *MVTEC_SETTINGS,
                    origin=f"generated: {n} organized {size[0]}x{size[1]} xyz tiffs ('{MVTEC_SHAPE}')",
                    meta={"scan_size": list(size)})


def generate_real3d(folder: Path, n: int, seed: int = 0) -> CloudSet:
    """``n`` unorganized .pcd clouds of exactly 112,896 points (no resampling needed on load)."""
    from align3d_rt.data.real3d import NUM_POINTS
    from align3d_rt.data.synthetic_real3d import make_real3d_sample, write_pcd

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = folder / f"real3d_{i:03d}.pcd"
        if not path.is_file():
            pts, _ = make_real3d_sample(REAL3D_SHAPE, "good" if i % 2 == 0 else "bulge", NUM_POINTS,
                                        np.random.default_rng(seed + i))
            write_pcd(path, pts)
        files.append((path, path.stem))
    return CloudSet("real3d", files, "real3d", "", origin=f"generated: {n} .pcd clouds of {NUM_POINTS} points "
                    f"('{REAL3D_SHAPE}')", meta={"points": NUM_POINTS})


def from_dataset(kind: str, root: Path, category: str, n: int) -> CloudSet:
    """The first ``n`` test samples of ``category`` under a dataset root (MVTec 3D-AD or Real3D-AD layout)."""
    from align3d_rt.data.readers import list_samples

    dataset = "mvtec3d" if kind == "mvtec" else "real3d"
    refs = list_samples(dataset, root, category, "test")
    if not refs:
        raise input_error(root, f"no {dataset} test samples of category {category!r}")
    picked = refs[:n]
    return CloudSet(kind, [(r.path, r.path.stem) for r in picked], dataset, category,
                    origin=f"{dataset} {root} ({category}, first {len(picked)} test samples)")


def cloud_sets(workdir: Path, kinds: list[str], n: int, roots: dict[str, tuple[Path, str]] | None = None,
               scan_size: tuple[int, int] = MVTEC_SCAN_SIZE) -> list[CloudSet]:
    """One CloudSet per kind: from ``roots[kind]`` (root, category) when given, else generated under workdir
    (mvtec scans of ``scan_size``)."""
    out = []
    for kind in kinds:
        if kind not in KINDS:
            raise Align3DError(f"cloud kind {kind!r}: choose from {', '.join(KINDS)}")
        if roots and kind in roots:
            out.append(from_dataset(kind, roots[kind][0], roots[kind][1], n))
        elif kind == "mvtec":
            out.append(generate_mvtec(workdir / "clouds" / f"mvtec_{scan_size[0]}x{scan_size[1]}", n, scan_size))
        else:
            out.append(generate_real3d(workdir / "clouds" / "real3d", n))
    return out


def timed_load(load: Callable[[Any], Any], item: Any) -> tuple[Any, float]:
    """(sample, seconds) of one load."""
    t0 = time.perf_counter()
    sample = load(item)
    return sample, time.perf_counter() - t0
