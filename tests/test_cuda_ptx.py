"""Every numba.cuda kernel of the package compiles to PTX for sm_80, sm_89 and sm_90.

Needs libNVVM (the CUDA toolkit), not a GPU: ``cuda.compile_ptx`` runs the whole numba front end
and NVVM for the target, so type errors and unsupported operations show up without a device.
numba-cuda compiles a called ``@cuda.jit(device=True)`` function for the *current device's*
compute capability (``CUDADispatcher.compile_device``), which needs a driver; the tests point
that look-up at the target cc and give every device function fresh overloads per test.
Signatures mirror the launches in ``render_splat_cuda`` and ``backproject_cuda`` (device arrays
from ``cuda.to_device`` / ``device_array`` are C-contiguous; Python ints/floats type as
int64/float64). A kernel added without a signature here fails ``test_every_kernel_has_a_signature``.
"""
from __future__ import annotations

import collections
import ctypes
import glob
import importlib
import os
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0"):
    pytest.skip("NUMBA_ENABLE_CUDASIM is set: the CUDA simulator has no compile_ptx", allow_module_level=True)

import numba.cuda.dispatcher
from cuda.pathfinder import DynamicLibNotFoundError, load_nvidia_dynamic_lib
from numba import cuda, types
from numba.core.typing.templates import Signature
from numba.cuda.cudadrv.error import NvvmSupportError
from numba.cuda.dispatcher import CUDADispatcher

PACKAGE = Path(__file__).resolve().parents[1] / "align3d_rt"
CCS = ((8, 0), (8, 9), (9, 0))
# compile_ptx options taken over from a kernel's own @cuda.jit options
FORWARDED = ("debug", "lineinfo", "fastmath", "opt", "forceinline", "launch_bounds")

f32, f64, i32, u8, u64, b1 = types.float32, types.float64, types.int32, types.uint8, types.uint64, types.boolean
SPLAT = "align3d_rt.render.splat_cuda"
BACKPROJECT = "align3d_rt.kernels.backproject_cuda"
SIGNATURES: dict[str, Signature] = {
    f"{SPLAT}:_fill_u64": types.void(u64[:, :, ::1], u64),
    f"{SPLAT}:_bbox_kernel": types.void(f32[:, ::1], f64[:, :, ::1], f64[:, ::1]),
    f"{SPLAT}:_project_kernel": types.void(
        f32[:, ::1], f64[:, :, ::1], f64[:, ::1], types.int64, types.int64, f64,
        u64[:, :, ::1], u64[:, :, ::1], i32[:, :, ::1]),
    f"{SPLAT}:_resolve_kernel": types.void(
        f32[:, ::1], f64[:, :, ::1], f64[:, ::1], u64[:, :, ::1], u64[:, :, ::1], f32[:, :, :, ::1],
        b1[:, ::1], f32[:, ::1], u8[::1], u8[:, :, :, ::1], u8[:, :, ::1]),
    f"{SPLAT}:_shade_kernel": types.void(f32[:, :, :, ::1], u8[:, :, :, ::1], types.int64, f64),
    f"{BACKPROJECT}:_backproject_cuda_kernel": types.void(
        f32[:, :, :, :, ::1], i32[:, :, :, ::1], b1[:, :, ::1], i32[::1], i32[::1], f32[::1], f64,
        f32[:, :, ::1]),
}

_USES_CUDA_JIT = re.compile(r"\bcuda\s*\.\s*jit\b|from\s+numba\.cuda\s+import\s[^\n]*\bjit\b")


def _cuda_modules() -> list[ModuleType]:
    """Every package module whose source mentions ``cuda.jit``, imported (found by text, so no heavy imports)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _USES_CUDA_JIT.search(path.read_text(encoding="utf-8")):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [importlib.import_module(name) for name in names]


def _dispatchers(device: bool) -> dict[str, CUDADispatcher]:
    """``module:name`` -> every kernel (device=False) or device function defined in those modules."""
    found = {}
    for module in _cuda_modules():
        for value in vars(module).values():
            if (isinstance(value, CUDADispatcher) and bool(value.targetoptions.get("device")) == device
                    and value.py_func.__module__ == module.__name__):
                found[f"{module.__name__}:{value.py_func.__qualname__}"] = value
    return found


def _toolkit_roots() -> list[str]:
    """CUDA_PATH / CUDA_HOME, /usr/local/cuda, then /usr/local/cuda-X.Y newest first."""
    versioned = sorted(glob.glob("/usr/local/cuda-*"),
                       key=lambda p: [int(x) for x in re.findall(r"\d+", p)], reverse=True)
    roots = [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda", *versioned]
    return [r for r in roots if r and os.path.isdir(r)]


def _preload_toolkit_nvvm() -> str | None:
    """Load a toolkit's libnvvm when cuda.pathfinder cannot find it; returns its path (None: not needed/none).

    Pathfinder (which numba-cuda's NVVM binding uses) tries wheels, conda, the system loader, then
    ``$CUDA_HOME/nvvm/lib64``. A wheel-assembled toolkit keeps libnvvm in ``<root>/lib`` and is found
    only through ld.so.conf; a library already loaded in the process is reused by pathfinder.
    """
    try:
        load_nvidia_dynamic_lib("nvvm")
        return None
    except DynamicLibNotFoundError:
        pass
    for root in _toolkit_roots():
        for rel in ("nvvm/lib64", "lib64", "lib", "targets/*/lib"):
            for path in sorted(glob.glob(os.path.join(root, rel, "libnvvm.so*"))):
                try:
                    ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
                except OSError:
                    continue
                return path
    return None


def _probe(a: Any) -> None:  # pragma: no cover - compiled only
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 1.0


@pytest.fixture(scope="module")
def nvvm() -> None:
    """Skip (only) when libNVVM cannot be found: compile a trivial kernel first."""
    _preload_toolkit_nvvm()
    try:
        cuda.compile_ptx(_probe, (f32[::1],), device=False, cc=CCS[0])
    except NvvmSupportError as err:
        pytest.skip(f"libNVVM not available: {err}")
    except DynamicLibNotFoundError as err:
        if "nvvm" not in str(err).lower():
            raise
        pytest.skip(f"libNVVM not found: {str(err).splitlines()[0]}")


def test_every_kernel_has_a_signature() -> None:
    """Kernels found in the package and the signature table agree (a new kernel needs an entry)."""
    found = set(_dispatchers(device=False))
    assert {SPLAT, BACKPROJECT} <= {k.split(":")[0] for k in found}, f"kernel scan is broken: {sorted(found)}"
    assert not found - set(SIGNATURES), f"kernels without a PTX signature here: {sorted(found - set(SIGNATURES))}"
    assert not set(SIGNATURES) - found, f"signatures of kernels that no longer exist: {sorted(set(SIGNATURES) - found)}"


@pytest.mark.parametrize("cc", CCS, ids=[f"sm_{a}{b}" for a, b in CCS])
@pytest.mark.parametrize("key", sorted(SIGNATURES), ids=[k.split(":")[1] for k in sorted(SIGNATURES)])
def test_kernel_compiles_to_ptx(nvvm: None, monkeypatch: pytest.MonkeyPatch, key: str, cc: tuple[int, int]) -> None:
    """The kernel compiles for compute capability cc into a PTX entry for sm_XY."""
    kernel = _dispatchers(device=False).get(key)
    assert kernel is not None, f"{key} is no longer a numba.cuda kernel"
    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device",
                        lambda: SimpleNamespace(compute_capability=cc), raising=False)
    for function in _dispatchers(device=True).values():  # compiled for this cc, then the old ones restored
        monkeypatch.setattr(function, "overloads", collections.OrderedDict())
    options = {k: kernel.targetoptions[k] for k in FORWARDED if k in kernel.targetoptions}
    ptx, restype = cuda.compile_ptx(kernel.py_func, SIGNATURES[key], device=False, cc=cc, **options)
    assert restype == types.void
    assert re.search(rf"^\.target sm_{cc[0]}{cc[1]}\b", ptx, re.MULTILINE), ptx[:500]
    assert re.search(r"^(\.visible\s+)?\.entry\s", ptx, re.MULTILINE), f"no .entry in the PTX of {key}"
