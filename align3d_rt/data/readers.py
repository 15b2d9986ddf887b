"""Dataset listing and loading: one SampleRef per sample, ``SampleRef.load() -> PointCloudSample``.

Datasets: 'mvtec3d' and 'synthetic' (the MVTec 3D-AD layout), 'eyecandies', 'real3d'.
Splits: 'train', 'validation', 'test' (Eyecandies folders train/val/test_public; Real3D-AD has
no validation split). Listings are sorted and deterministic; test samples are ordered by label
folder then file name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt import errors
from align3d_rt.data.sample import PointCloudSample

DATASETS = ("mvtec3d", "eyecandies", "real3d", "synthetic")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SampleRef:
    """Where one sample lives. ``path``: the xyz tiff (MVTec), the depth png (Eyecandies) or the
    .pcd (Real3D-AD); ``rgb_path``/``gt_path``: colour image and gt mask/txt when the layout has them."""

    path: Path
    category: str
    split: str
    label_name: str
    dataset: str
    rgb_path: Path | None = None
    gt_path: Path | None = None

    @property
    def sample_id(self) -> str:
        return f"{self.category}/{self.split}/{self.label_name}/{self.path.stem}"

    def load(self) -> PointCloudSample:
        fields: dict[str, Any] = {"category": self.category, "split": self.split, "label_name": self.label_name,
                  "dataset": self.dataset}
        if self.dataset in ("mvtec3d", "synthetic"):
            from align3d_rt.data.mvtec3d import load_mvtec_sample

            return load_mvtec_sample(self.path, self.rgb_path, self.gt_path, **fields)
        if self.dataset == "eyecandies":
            from align3d_rt.data.eyecandies import load_eyecandies_sample

            return load_eyecandies_sample(self.path, **fields)
        if self.dataset == "real3d":
            from align3d_rt.data.real3d import load_real3d_sample

            return load_real3d_sample(self.path, self.gt_path, **fields)
        raise errors.input_error(self.path, f"unknown dataset {self.dataset!r}")


def _check(dataset: str, root: str | os.PathLike[str]) -> Path:
    root = Path(root)
    if dataset not in DATASETS:
        raise errors.input_error(root, f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise errors.input_error(root, f"{dataset} root folder not found")
    return root


_CATEGORY_MARKERS = {"mvtec3d": ("train", "test"), "synthetic": ("train", "test"),
                     "eyecandies": ("train", "val", "test_public"), "real3d": ("train", "test")}


def list_categories(dataset: str, root: str | os.PathLike[str]) -> list[str]:
    """Sorted category folder names under ``root`` (folders holding one of the dataset's split folders)."""
    root = _check(dataset, root)
    cats = sorted(p.name for p in root.iterdir()
                  if p.is_dir() and any((p / m).is_dir() for m in _CATEGORY_MARKERS[dataset]))
    if not cats:
        raise errors.input_error(root, f"no {dataset} categories found (expected <category>/train, .../test folders)")
    return cats


def list_samples(dataset: str, root: str | os.PathLike[str], category: str, split: str) -> list[SampleRef]:
    """All samples of one category and split, sorted."""
    root = _check(dataset, root)
    if split not in SPLITS:
        raise errors.input_error(root / category, f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    cat_dir = root / category
    if not cat_dir.is_dir():
        raise errors.input_error(cat_dir, "category folder not found")
    if dataset in ("mvtec3d", "synthetic"):
        refs = _mvtec_samples(dataset, cat_dir, category, split)
    elif dataset == "eyecandies":
        refs = _eyecandies_samples(cat_dir, category, split)
    else:
        refs = _real3d_samples(cat_dir, category, split)
    return refs


def _mvtec_samples(dataset: str, cat_dir: Path, category: str, split: str) -> list[SampleRef]:
    split_dir = cat_dir / split
    if not split_dir.is_dir():
        raise errors.input_error(split_dir, "split folder not found")
    refs = []
    for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for xyz in sorted((label_dir / "xyz").glob("*.tiff")):
            refs.append(SampleRef(path=xyz, category=category, split=split, label_name=label_dir.name, dataset=dataset,
                                  rgb_path=label_dir / "rgb" / f"{xyz.stem}.png",
                                  gt_path=label_dir / "gt" / f"{xyz.stem}.png"))
    return refs


def _eyecandies_samples(cat_dir: Path, category: str, split: str) -> list[SampleRef]:
    from align3d_rt.data import eyecandies

    data_dir = cat_dir / eyecandies.SPLIT_DIRS[split] / "data"
    if not data_dir.is_dir():
        raise errors.input_error(data_dir, "split folder not found")
    refs = []
    for depth in sorted(data_dir.glob("*_depth.png")):
        files = eyecandies.sample_files(depth)
        label = "anomalous" if eyecandies.is_anomalous(files["metadata"]) else "good"
        refs.append(SampleRef(path=depth, category=category, split=split, label_name=label, dataset="eyecandies",
                              rgb_path=files["rgb"], gt_path=files["mask"]))
    return refs


def _real3d_samples(cat_dir: Path, category: str, split: str) -> list[SampleRef]:
    from align3d_rt.data.real3d import parse_label

    if split == "validation":
        raise errors.input_error(cat_dir, "Real3D-AD has no validation split (use train or test)")
    split_dir = cat_dir / split
    if not split_dir.is_dir():
        raise errors.input_error(split_dir, "split folder not found")
    refs = []
    for pcd in sorted(split_dir.glob("*.pcd"), key=_real3d_sort_key):
        gt = cat_dir / "gt" / f"{pcd.stem}.txt" if split == "test" else None
        refs.append(SampleRef(path=pcd, category=category, split=split, label_name=parse_label(pcd.stem),
                              dataset="real3d", gt_path=gt))
    return refs


def _real3d_sort_key(path: Path) -> tuple[int, str]:
    head = path.stem.split("_")[0]
    return (int(head) if head.isdigit() else -1, path.name)


def load_point_file(path: str | os.PathLike[str], num_points: int | None = None,
                    use_cache: bool = True) -> PointCloudSample:
    """Load a loose point file: MVTec-style .tiff/.tif (preprocessed and cached like the dataset;
    ``use_cache=False`` preprocesses again and writes no cache entry), .pcd/.ply (checked readers,
    point_headers.read_points), .npy (N,3).
    ``num_points`` resamples unorganized clouds (e.g. 112,896 like Real3D-AD); None keeps them as they are."""
    from align3d_rt.data.point_files import path_problem
    from align3d_rt.data.point_headers import check_min_points, read_points
    from align3d_rt.data.real3d import read_point_cloud, resample

    path = Path(path)
    problem = path_problem(path)
    if problem:
        raise errors.input_error(path, problem)
    suffix = path.suffix.lower()
    if suffix in (".tiff", ".tif"):
        from align3d_rt.data.mvtec3d import grid_to_sample, preprocessed_grid

        grid, shape = preprocessed_grid(path, use_cache=use_cache)
        sample = grid_to_sample(grid, None, None, source=str(path), meta={"original_shape": shape})
        check_min_points(path, sample.points)
        return sample
    if suffix in (".pcd", ".ply"):
        points, colors = read_point_cloud(path)
    elif suffix == ".npy":
        points, colors = read_points(path), None
    else:
        raise errors.input_error(path, f"unsupported point file type '{suffix}' (use .tiff, .pcd, .ply or .npy)")
    original = int(points.shape[0])
    check_min_points(path, points)
    if num_points is not None:
        points, _, colors = resample(points, None, colors, num_points)
    return PointCloudSample(points=np.ascontiguousarray(points, np.float32), colors=colors, source=str(path),
                            meta={"original_points": original})
