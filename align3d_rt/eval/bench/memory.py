"""Peak memory of a measured block: host RSS (psutil, and the kernel's VmHWM on Linux), GPU (torch, NVML).

``with PeakMemory() as mem: ...`` then ``mem.result()``:
- host_peak_rss_mb: the largest resident set size of this process during the block. On Linux the
  kernel's high-water mark (VmHWM) is reset at the start (``/proc/self/clear_refs``) and read at the
  end, so short peaks count; elsewhere a psutil sampler thread (every 5 ms) gives it.
- host_rss_before_mb: the RSS when the block started (model weights etc. already loaded).
- gpu_peak_allocated_mb / gpu_peak_reserved_mb: torch's CUDA caching allocator peaks, when torch
  is imported and CUDA is usable (other backends allocate outside it: see the NVML figure).
- nvml_peak_used_mb / nvml_used_before_mb: device memory in use (all processes) sampled through
  nvidia-ml-py, when it finds a GPU.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

_MB = 1024.0 * 1024.0
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_vm_hwm() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _torch_cuda() -> Any:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return torch
    except Exception:  # noqa: BLE001 - a broken CUDA install counts as no GPU
        return None
    return None


class _Nvml:
    """Device memory in use on GPU 0 through nvidia-ml-py (None when it is missing or finds no GPU)."""

    def __init__(self) -> None:
        self.handle: Any = None
        self.name = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(self.handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
            self._pynvml = pynvml
        except Exception:  # noqa: BLE001 - no library, no driver or no GPU: no NVML figures
            self.handle = None

    def used_bytes(self) -> int | None:
        if self.handle is None:
            return None
        try:
            return int(self._pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        except Exception:  # noqa: BLE001
            return None


class PeakMemory:
    """Context manager measuring peak host and GPU memory of its block (see the module docstring)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak_rss = 0
        self._nvml = _Nvml()
        self._nvml_peak: int | None = None
        self._out: dict[str, Any] = {}

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while True:
            self._peak_rss = max(self._peak_rss, proc.memory_info().rss)
            used = self._nvml.used_bytes()
            if used is not None:
                self._nvml_peak = max(self._nvml_peak or 0, used)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        import psutil

        torch = _torch_cuda()
        if torch is not None:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._rss_before = psutil.Process().memory_info().rss
        self._hwm_ok = _reset_vm_hwm()
        self._nvml_before = self._nvml.used_bytes()
        self._peak_rss = self._rss_before
        self._thread = threading.Thread(target=self._sample, name="align3d-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        hwm = _vm_hwm_bytes() if self._hwm_ok else None
        peak = max(self._peak_rss, hwm or 0)
        out: dict[str, Any] = {"host_peak_rss_mb": peak / _MB, "host_rss_before_mb": self._rss_before / _MB,
                               "host_peak_source": "VmHWM (kernel) + psutil" if hwm else "psutil sampler (5 ms)"}
        torch = _torch_cuda()
        if torch is not None:
            torch.cuda.synchronize()
            out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / _MB
            out["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / _MB
        if self._nvml_peak is not None:
            out["nvml_gpu"] = self._nvml.name
            out["nvml_peak_used_mb"] = self._nvml_peak / _MB
            out["nvml_used_before_mb"] = (self._nvml_before or 0) / _MB
        self._out = out

    def result(self) -> dict[str, Any]:
        return dict(self._out)

