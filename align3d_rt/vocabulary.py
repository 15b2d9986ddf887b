"""The words settings are spelled in: one str-valued enum per kind and one parser for them all.

Members are ``str`` (``StrEnum``): JSON, manifests, CLI choices and messages read exactly as the plain
words did. ``parse`` accepts any case and the aliases of ``ALIASES`` (fp32 for the f32 hint...) and
refuses anything else with one ``OptionError`` line naming the setting and the choices.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TypeVar

from align3d_rt.errors import OptionError

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10 (requires-python): the same text behaviour as 3.11's StrEnum

    class StrEnum(str, Enum):
        """A str-valued enum whose str() and format() are the plain value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)


class Precision(StrEnum):
    """Precision of an exported encoder graph."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT8_WEIGHTS = "int8-weights"  # OpenVINO IR only: NNCF weight compression


ONNX_PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8)
IR_PRECISIONS = (Precision.FP32, Precision.INT8, Precision.INT8_WEIGHTS)


class ExportFormat(StrEnum):
    """What ``align3d-rt export --format`` writes into a bundle (``openvino`` is also the manifest's IR section)."""

    ONNX = "onnx"
    OPENVINO = "openvino"


class Source(StrEnum):
    """What a backend runs: a training run directory or an exported bundle."""

    RUN = "run"
    BUNDLE = "bundle"


class PrecisionHint(StrEnum):
    """The compute precision asked of a backend (auto: the fastest the device computes natively)."""

    AUTO = "auto"
    BF16 = "bf16"
    F16 = "f16"
    F32 = "f32"


class PerformanceHint(StrEnum):
    """OpenVINO's PERFORMANCE_HINT."""

    LATENCY = "LATENCY"
    THROUGHPUT = "THROUGHPUT"


# Other spellings accepted for a member (lower case).
ALIASES: dict[type[StrEnum], dict[str, str]] = {
    PrecisionHint: {"fp32": "f32", "float32": "f32", "fp16": "f16", "float16": "f16", "bfloat16": "bf16"},
}

E = TypeVar("E", bound=StrEnum)


def words(members: Iterable[StrEnum]) -> tuple[str, ...]:
    """The members as plain text (argparse choices, messages): ``words(ExportFormat) == ('onnx', 'openvino')``."""
    return tuple(str(m) for m in members)


def parse(kind: type[E], value: object, what: str, choices: Sequence[E] | None = None) -> E:
    """``value`` as a member of ``kind`` (any case, aliases accepted) among ``choices`` (default: all members).

    Refused with ``OptionError("WHAT 'value' is not one of a, b, c")``."""
    allowed = tuple(choices) if choices is not None else tuple(kind)
    text = str(value).strip()
    by_lower = {str(m).lower(): m for m in allowed}
    key = text.lower()
    key = ALIASES.get(kind, {}).get(key, key)
    if key not in by_lower:
        raise OptionError(f"{what} {value!r} is not one of {', '.join(str(m) for m in allowed)}")
    return by_lower[key]
