"""`align3d-rt render`: render one point file into its views, a contact sheet and correspondences."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt import errors
from align3d_rt.cli.numbers import image_size
from align3d_rt.io_utils import atomic_path, save_npz_atomic, save_png_atomic
from align3d_rt.render.views import VIEW_PRESETS, RenderSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("render", help="render a point cloud file into its views (PNG + correspondences)",
                              description="Render a dataset sample file or a loose .tiff/.pcd/.ply/.npy cloud.")
    p.add_argument("path", help="point file (.tiff, .pcd, .ply, .npy); relative to --dataset-root when given")
    p.add_argument("--dataset-root", default=None, help="dataset folder that PATH is relative to")
    p.add_argument("--dataset", default=None, choices=["mvtec3d", "eyecandies", "real3d", "synthetic"],
                   help="use this dataset's render settings (point size, window, view preset, normals)")
    p.add_argument("--category", default="", help="category for the per-class point size (MVTec 3D-AD)")
    p.add_argument("--preset", default=None, choices=sorted(VIEW_PRESETS), help="view preset (default: paper9, "
                   "or the dataset's preset with --dataset)")
    p.add_argument("--renderer", default="splat", choices=["splat", "open3d"])
    p.add_argument("--image-size", type=image_size, default=336)
    p.add_argument("--out", required=True, help="output folder (new or empty; locked while written)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier render output at --out: only the files it wrote (a folder holding "
                        "anything else is refused)")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> RenderSettings:
    from dataclasses import replace

    from align3d_rt.render.views import settings_for

    s = settings_for(args.dataset, args.category) if args.dataset else RenderSettings()
    if args.preset:
        s = replace(s, preset=args.preset)
    return replace(s, renderer=args.renderer, image_size=int(args.image_size))


def contact_sheet(images: np.ndarray, labels: list[str], path: Path) -> None:
    """Write a labelled grid of the views (matplotlib) atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k])
            ax.set_title(f"{k:02d}: {labels[k]}", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from align3d_rt.cli.out_folder import OutputFolder
    from align3d_rt.data.readers import load_point_file
    from align3d_rt.data.real3d import NUM_POINTS as REAL3D_POINTS  # Real3D-AD clouds are resampled like the dataset
    from align3d_rt.render.api import render_views
    from align3d_rt.render.views import category_problem

    if (problem := category_problem(args.dataset or "", args.category)) is not None:  # the names infer accepts
        raise errors.Align3DError(problem)
    folder = OutputFolder(Path(args.out), "render", overwrite=args.overwrite)
    folder.check()  # before any work: files of the user's are never overwritten
    path = Path(args.dataset_root) / args.path if args.dataset_root else Path(args.path)
    if not path.is_file():
        raise errors.input_error(path, "point file not found")
    sample = load_point_file(path, num_points=REAL3D_POINTS if args.dataset == "real3d" else None)
    settings = _settings(args)
    result = render_views(sample.points, settings, colors=sample.colors, labels=sample.point_labels)
    out = Path(args.out)
    with folder:
        _write_render(out, settings, result)
    print(f"rendered {result.num_views} views of {sample.num_points} points ({settings.renderer}, "
          f"{settings.preset}) into {out}")
    return 0


def _write_render(out: Path, settings: Any, result: Any) -> None:
    labels = [f"{axis} {deg:+.0f}" for axis, deg in settings.views]
    for v in range(result.num_views):
        save_png_atomic(out / f"view_{v:02d}.png", result.images[v])
        if result.rgb_images is not None:
            save_png_atomic(out / f"rgb_{v:02d}.png", result.rgb_images[v])
        if result.gt_masks is not None:
            save_png_atomic(out / f"gt_{v:02d}.png", result.gt_masks[v])
    contact_sheet(result.images, labels, out / "contact_sheet.png")
    save_npz_atomic(out / "correspondences.npz", pixels=result.pixels, visible=result.visible,
                    settings=np.array(json.dumps(settings.to_dict(), sort_keys=True)))
