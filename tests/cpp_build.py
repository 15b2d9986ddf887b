"""Build the C++ inspector (root CMakeLists.txt) with CMake into a cached folder under build/.

Shared by the C++ tests and the benchmark: the first call configures and builds (minutes on 2
vCPUs), later calls only rebuild what changed. OpenVINO comes from the `openvino` wheel of the
running Python (its cmake folder); the other libraries from Debian (scripts/setup.sh).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def openvino_cmake_dir() -> Path:
    import openvino

    return Path(openvino.__file__).resolve().parent / "cmake"


def missing_tools() -> list[str]:
    return [t for t in ("cmake", "c++") if shutil.which(t) is None]


def build(name: str = "cpp", *options: str) -> Path:
    """Configure (once) and build ``build/<name>`` with the given -D options; returns the build folder."""
    out = ROOT / "build" / name
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if not (out / "CMakeCache.txt").is_file():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(out), *generator, "-DCMAKE_BUILD_TYPE=Release",
                        f"-DOpenVINO_DIR={openvino_cmake_dir()}", *options], check=True, capture_output=True, text=True)
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    proc = subprocess.run(["cmake", "--build", str(out), "-j", jobs], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"C++ build failed in {out}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out


def ctest(build_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["ctest", "--test-dir", str(build_dir), "--output-on-failure"], capture_output=True,
                          text=True)


def openvino_fp32_bundle(root: Path) -> Path:
    """An OpenVINO-format fp32 bundle of a random mvtec9 run under ``root`` (what the C++ vs Python
    comparisons score: f32 compute matches Python to the tolerance of the spec)."""
    from export_support import make_run_dir

    from align3d_rt.cli import main

    run = make_run_dir(root / "run", preset="mvtec9")
    out = root / "ov_fp32"
    assert main(["export", "--run", str(run), "--out", str(out), "--format", "openvino", "--precision", "fp32"]) == 0
    return out
