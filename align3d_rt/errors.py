"""Error types: every user-facing failure is one line that names the file (or setting) and the problem."""
from __future__ import annotations

from os import PathLike
from typing import Any


class Align3DError(Exception):
    """Base class; the CLI prints ``str(err)`` on one line and exits non-zero."""


class InputError(Align3DError):
    """A data file (point cloud, tiff, pcd, gt txt, mask) is missing or malformed."""


class WeightsError(Align3DError):
    """CLIP weights are missing or do not fit the requested model."""


class RunDirError(Align3DError):
    """A training run directory is incomplete, corrupt or from another model/version."""


class BundleError(Align3DError):
    """An exported bundle is missing files, was altered, or does not fit the runtime."""


class OptionError(Align3DError):
    """A setting has a value the tool does not take (bad input: exit code 2, one line)."""


class BackendUnavailable(Align3DError):
    """The requested backend (onnxruntime, tensorrt, CUDA...) is not installed or usable here."""


def import_backend(module: str, label: str, hint: str) -> Any:
    """``import module``, or BackendUnavailable "LABEL is not installed (import error); HINT"."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailable(f"{label} is not installed ({err}); {hint}") from None


def input_error(path: str | PathLike[str], problem: str) -> InputError:
    """Build the canonical ``PATH: problem`` error."""
    return InputError(f"{path}: {problem}")
