"""The machine a benchmark ran on: CPU model and flags, cores, memory, GPU, library versions, load."""
from __future__ import annotations

import os
import platform
from typing import Any

# CPU flags that decide the encoder's speed (vector width, int8 dot products, bf16/AMX)
RELEVANT_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                  "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd")


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if ":" in line:
                    key, value = (part.strip() for part in line.split(":", 1))
                    if key in ("model name", "flags", "Features") and key not in out:
                        out[key] = value
    except OSError:
        pass
    return out


def gpu_description() -> dict[str, Any]:
    """GPU name and memory when nvidia-ml-py or torch finds one; {} otherwise."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        return {"name": name.decode() if isinstance(name, bytes) else str(name),
                "memory_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2 ** 20,
                "driver": str(pynvml.nvmlSystemGetDriverVersion()), "source": "nvml"}
    except Exception:  # noqa: BLE001 - no library, driver or GPU
        pass
    from align3d_rt.runtime.devices import cuda_available

    if not cuda_available():
        return {}
    try:
        import torch

        props = torch.cuda.get_device_properties(0)
        return {"name": props.name, "memory_mb": props.total_memory / 2 ** 20, "source": "torch.cuda"}
    except Exception:  # noqa: BLE001
        return {"name": "CUDA GPU (name unknown)", "source": "numba"}


def describe_machine() -> dict[str, Any]:
    """CPU model/flags, logical cores, usable cores, memory, GPU, OS, library versions, load average."""
    import psutil

    from align3d_rt.versions import library_versions

    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in RELEVANT_FLAGS if f in flags],
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_mb": psutil.virtual_memory().total / 2 ** 20,
        "gpu": gpu_description(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def hardware_label(machine: dict[str, Any], device: str) -> str:
    """Short hardware name for a table row: the GPU on 'cuda', else the CPU and its cores."""
    if device == "cuda" and machine.get("gpu"):
        return str(machine["gpu"].get("name"))
    return f"{machine.get('cpu_model')} ({machine.get('usable_cores')} vCPU)"
