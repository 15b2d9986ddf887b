"""``align3d-rt infer --triton URL``: the options of the client path and their checks."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from align3d_rt.cli.numbers import non_negative_int, positive_float
from align3d_rt.errors import Align3DError

if TYPE_CHECKING:
    from align3d_rt.serving.triton_client import TritonScorer


def add_triton_client_options(p: argparse.ArgumentParser) -> None:
    from align3d_rt.artifacts.triton_layout import DEFAULT_MODEL

    g = p.add_argument_group("Triton server (instead of --run/--bundle)")
    g.add_argument("--triton", metavar="URL", default=None,
                   help="score on a Triton server: http://HOST:8000 or grpc://HOST:8001 (a repository from "
                        "align3d-rt export --format triton)")
    g.add_argument("--model", default=DEFAULT_MODEL, help=f"the pipeline model's name (default {DEFAULT_MODEL})")
    g.add_argument("--timeout", type=positive_float, default=120.0,
                   help="seconds each server call may take (default 120); failed connections are retried")
    g.add_argument("--retries", type=non_negative_int, default=3,
                   help="retries of a call the server did not answer (default 3)")


def check_triton_choice(args: argparse.Namespace) -> None:
    """Exactly one of --run/--bundle/--triton; with --triton none of the local-encoder options."""
    given = [flag for flag, value in (("--run", args.run), ("--bundle", args.bundle), ("--triton", args.triton))
             if value is not None]
    if len(given) != 1:
        raise Align3DError("give one of --run, --bundle or --triton" + (f" (got {', '.join(given)})" if given else ""))
    if args.triton is None:
        return
    local = {"--backend": args.backend, "--clip-weights": args.clip_weights, "--precision-hint": args.precision_hint,
             "--performance-hint": args.performance_hint, "--device-name": args.device_name,
             "--num-streams": args.num_streams, "--threads": args.threads}
    used = [flag for flag, value in local.items() if value is not None]
    if args.device != "auto":
        used.append("--device")
    if args.scoring != "ours" or args.image_level_weight is not None or args.point_level_weight is not None \
            or args.no_image_map_blur:
        used.append("--scoring and its weights")
    if used:
        raise Align3DError(f"{', '.join(used)}: the Triton server's repository fixes the encoder and the scoring; "
                           f"leave them out with --triton")


def triton_scorer(args: argparse.Namespace) -> TritonScorer:
    from align3d_rt.serving.triton_client import TritonScorer

    scorer = TritonScorer(args.triton, args.model, timeout=args.timeout, retries=args.retries)
    scorer.connect()  # before the output folder is made: an unreachable server leaves nothing behind
    return scorer
