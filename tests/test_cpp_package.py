"""C++ inspector as a CMake package (issue #22): `cmake --install` to a prefix, then cpp/examples
built as an outside project with find_package(align3d) and run on a bundle + cloud."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpp_build
from export_support import make_run_dir

pytest.importorskip("openvino")
if cpp_build.missing_tools():
    pytest.skip(f"C++ toolchain missing ({', '.join(cpp_build.missing_tools())}); run scripts/setup.sh",
                allow_module_level=True)

ROOT = cpp_build.ROOT
PUBLIC_HEADERS = sorted(p.name for d in ("cpp/include/align3d", "cpp/geometry/include/align3d")
                        for p in (ROOT / d).glob("*.hpp"))


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_dir = cpp_build.build("cpp")
    out = tmp_path_factory.mktemp("cpp_prefix")
    proc = subprocess.run(["cmake", "--install", str(build_dir), "--prefix", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def example(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cpp/examples configured and built on its own against the installed prefix (no OpenVINO_DIR given:
    the package's recorded hint finds the wheel)."""
    out = tmp_path_factory.mktemp("cpp_example")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    proc = subprocess.run(["cmake", "-S", str(ROOT / "cpp" / "examples"), "-B", str(out), *generator,
                           "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={prefix}",
                           "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run(["cmake", "--build", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from align3d_rt.cli import main

    """An fp32 ONNX-only bundle (OpenVINO compiles encoder.onnx; test_cpp_inspector covers the IR)."""
    root = tmp_path_factory.mktemp("pkg_bundle")
    run = make_run_dir(root / "run", preset="mvtec9")
    assert main(["export", "--run", str(run), "--out", str(root / "onnx_fp32"), "--format", "onnx"]) == 0
    return root / "onnx_fp32"


def test_install_holds_public_headers_and_package_files_only(prefix: Path) -> None:
    files = {p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if p.is_file()}
    assert {f"include/align3d/{h}" for h in PUBLIC_HEADERS} == {f for f in files if f.startswith("include/")}
    private = ({p.name for p in (ROOT / "cpp" / "src").iterdir()}
               | {p.name for p in (ROOT / "cpp/geometry/src").iterdir()})
    assert not {Path(f).name for f in files} & private, files
    cmake_dir = "lib/cmake/align3d"
    assert {f"{cmake_dir}/align3dConfig.cmake", f"{cmake_dir}/align3dConfigVersion.cmake",
            f"{cmake_dir}/align3dTargets.cmake", "bin/align3d-inspect"} <= files
    version = re.search(r'^version = "([0-9.]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert f'set(PACKAGE_VERSION "{version}")' in (prefix / cmake_dir / "align3dConfigVersion.cmake").read_text()
    targets = (prefix / cmake_dir / "align3dTargets.cmake").read_text()
    for name in ("align3d::geometry", "align3d::core", "align3d::inspector"):
        assert f"add_library({name} STATIC IMPORTED)" in targets
    assert str(ROOT) not in targets  # relocatable: no source or build paths
    for header in PUBLIC_HEADERS:  # public headers include only the standard library and each other
        includes = re.findall(r'#include\s+[<"]([^>"]+)[>"]', (prefix / "include/align3d" / header).read_text())
        assert all("/" not in i or i in {f"align3d/{h}" for h in PUBLIC_HEADERS} for i in includes), (header, includes)


def test_outside_project_builds_against_prefix_and_scores_like_the_cli(prefix: Path, example: Path, bundle: Path,
                                                                       tmp_path: Path) -> None:
    cache = (example / "CMakeCache.txt").read_text()
    assert f"align3d_DIR:PATH={prefix}/lib/cmake/align3d" in cache  # the install, not the build tree
    assert f"OpenVINO_DIR:PATH={cpp_build.openvino_cmake_dir()}" in cache  # found through the recorded hint
    commands = json.loads((example / "compile_commands.json").read_text())
    assert len(commands) == 1 and f"-isystem {prefix}/include" in commands[0]["command"]
    assert "cpp/src" not in commands[0]["command"] and "cpp/include" not in commands[0]["command"]
    p = np.random.default_rng(7).normal(size=(3000, 3))
    np.save(tmp_path / "part.npy", (0.04 * p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32))
    proc = subprocess.run([str(example / "align3d_example"), str(bundle), str(tmp_path / "part.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.strip().splitlines()]
    assert len(rows) == 2 and rows[0][:6] == rows[1][:6] and int(rows[0][5]) == 3000, rows
    cli = subprocess.run([str(prefix / "bin" / "align3d-inspect"), str(bundle), str(tmp_path / "part.npy"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    sample = json.loads((tmp_path / "out" / "scores.json").read_text())["samples"]["part"]
    assert abs(float(rows[0][1]) - sample["object_score"]) <= 1e-6
    assert abs(float(rows[0][3]) - sample["max_point_score"]) <= 1e-6


def test_example_reports_a_bad_cloud_in_one_line(example: Path, bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "flat.npy"
    np.save(bad, np.zeros((5, 2), np.float32))
    proc = subprocess.run([str(example / "align3d_example"), str(bundle), str(bad)], capture_output=True, text=True,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"{bad}: "), proc.stderr
