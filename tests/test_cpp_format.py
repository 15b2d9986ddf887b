"""Our C++ (cpp/**/*.cpp, *.hpp) is formatted by the repository's .clang-format: scripts/format_cpp.sh
formats, `clang-format --dry-run --Werror` checks."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if shutil.which("clang-format") is None:
    pytest.skip("clang-format missing; run scripts/setup.sh", allow_module_level=True)


def cpp_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "cpp").rglob("*") if p.suffix in {".cpp", ".hpp"} and p.is_file())


def unformatted(root: Path) -> list[str]:
    """Files under root/cpp whose text differs from clang-format's output (root/.clang-format style)."""
    files = cpp_files(root)
    assert files, f"no C++ files under {root / 'cpp'}"
    proc = subprocess.run(["clang-format", "--dry-run", "--Werror", "--style=file", *map(str, files)],
                          capture_output=True, text=True, cwd=root)
    bad = sorted({m.group(1) for m in re.finditer(r"^(.+?):\d+:\d+: error:", proc.stderr, re.M)})
    assert proc.returncode == 0 or bad, proc.stderr[-2000:]  # a failure that names no file is a tool error
    return [str(Path(b).relative_to(root)) for b in bad]


def test_cpp_sources_are_clang_formatted() -> None:
    bad = unformatted(ROOT)
    assert not bad, f"run scripts/format_cpp.sh; not formatted: {', '.join(bad)}"


def test_format_script_output_passes_the_check_and_is_stable(tmp_path: Path) -> None:
    """scripts/format_cpp.sh on a copy of the sources gives files the check accepts, and a second run
    changes nothing (the style is a fixed point)."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "cpp", copy / "cpp", ignore=shutil.ignore_patterns("data"))
    shutil.copy(ROOT / ".clang-format", copy / ".clang-format")
    (copy / "cpp" / "probe.cpp").write_text("int  main( ){return 0;}\n")
    assert "cpp/probe.cpp" in unformatted(copy)
    script = [str(ROOT / "scripts" / "format_cpp.sh"), str(copy)]
    subprocess.run(script, check=True, capture_output=True, text=True)
    assert unformatted(copy) == []
    assert (copy / "cpp" / "probe.cpp").read_text() == "int main() { return 0; }\n"
    first = {p: p.read_bytes() for p in cpp_files(copy)}
    subprocess.run(script, check=True, capture_output=True, text=True)
    assert {p: p.read_bytes() for p in cpp_files(copy)} == first


def test_format_script_refuses_a_folder_that_is_not_a_checkout(tmp_path: Path) -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "format_cpp.sh"), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == f"{tmp_path}: not a checkout (needs .clang-format and cpp/)"
