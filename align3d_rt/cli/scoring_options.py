"""``--scoring ours|reference`` and the reference mode's two fusion weights (eval and infer)."""
from __future__ import annotations

import argparse
from typing import Any

from align3d_rt.cli.numbers import fraction
from align3d_rt.errors import Align3DError
from align3d_rt.scoring_reference import SCORING_MODES, ReferenceSettings


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scoring", choices=SCORING_MODES, default="ours",
                        help="ours (default): unblurred point scores, object score = max fused point score + mean "
                             "fused global probability; reference: the Align3D-AD test script's rules (per-branch "
                             "maps blurred on the 336x336 grid, separate image/point-level weights; "
                             "docs/runtime-spec.md section 12)")
    parser.add_argument("--image-level-weight", type=fraction, default=None,
                        help="reference mode: aligned-branch weight of the object score (default: the run's or "
                             "bundle's fusion weight, 0.5 unless trained or imported otherwise)")
    parser.add_argument("--point-level-weight", type=fraction, default=None,
                        help="reference mode: aligned-branch weight of the point map (default: as above)")
    parser.add_argument("--no-image-map-blur", action="store_true",
                        help="reference mode: skip the second blur of the image-level map (the reference's "
                             "--need_blur False, which its released test scripts pass)")


def apply_scoring(args: argparse.Namespace, detector: Any) -> Any:
    """Switch the detector to reference scoring when asked; returns it."""
    wi, wp = getattr(args, "image_level_weight", None), getattr(args, "point_level_weight", None)
    no_blur = bool(getattr(args, "no_image_map_blur", False))
    if getattr(args, "scoring", "ours") != "reference":
        if wi is not None or wp is not None or no_blur:
            raise Align3DError("--image-level-weight/--point-level-weight/--no-image-map-blur: only with "
                               "--scoring reference")
        return detector
    import importlib.util

    if importlib.util.find_spec("scipy") is None:  # the line-side install has no scipy
        raise Align3DError("--scoring reference: needs scipy (its gaussian_filter is the reference's blur); "
                           "pip install scipy")
    default = float(detector.fusion_weight)
    for flag, value in (("--image-level-weight", wi), ("--point-level-weight", wp)):
        if value is not None and not 0.0 <= value <= 1.0:  # also refuses nan
            raise Align3DError(f"{flag} {value}: must be in [0, 1]")
    detector.reference_scoring = ReferenceSettings(image_weight=default if wi is None else wi,
                                                   point_weight=default if wp is None else wp,
                                                   blur_image_map=not no_blur)
    return detector
