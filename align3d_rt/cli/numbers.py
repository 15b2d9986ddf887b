"""argparse types for every numeric option: a bad value is one line, exit 2, before any work.

``positive_int`` (1, 2, ...), ``non_negative_int`` (0, 1, ...), ``positive_float`` / ``non_negative_float``
(finite), ``fraction`` (finite, in [0, 1]), ``num_streams`` (a positive int or AUTO), ``image_size``
(render size in pixels, 8 to MAX_IMAGE_SIZE: nine views of a larger size do not fit in memory).
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any, NoReturn

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "fraction", "num_streams",
           "image_size", "MAX_IMAGE_SIZE", "thread_count", "MAX_THREADS", "OneLineParser"]

MAX_IMAGE_SIZE = 4096  # 9 views x 4096^2 x 3 bytes = 450 MB of pictures before any feature map


def _int(text: str, lowest: int, what: str) -> int:
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def _float(text: str, what: str, ok: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1, "a positive integer")


def image_size(text: str) -> int:
    value = _int(text, 8, f"an integer from 8 to {MAX_IMAGE_SIZE}")
    if value > MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be an integer from 8 to {MAX_IMAGE_SIZE}, got {text!r}")
    return value


MAX_THREADS = 1024  # more threads than any machine has cores: a typo (--threads 100000 exhausted the machine)


def thread_count(text: str) -> int:
    value = _int(text, 1, f"an integer from 1 to {MAX_THREADS}")
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_THREADS}, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    return _int(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _float(text, "a finite number > 0", lambda v: v > 0)


def non_negative_float(text: str) -> float:
    return _float(text, "a finite number >= 0", lambda v: v >= 0)


def fraction(text: str) -> float:
    return _float(text, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def num_streams(text: str) -> str:
    """OpenVINO NUM_STREAMS: AUTO or a positive integer (kept as text)."""
    if text.upper() == "AUTO":
        return "AUTO"
    return str(_int(text, 1, "a positive integer or AUTO"))


class OneLineParser(argparse.ArgumentParser):
    """A parser whose errors are one line ``PROG: error: MESSAGE`` (exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)
