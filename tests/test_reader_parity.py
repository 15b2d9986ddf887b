"""Python and C++ read the same point files the same way (issue #21 families 2, 3, 7, 8; spec §4.1):
the same files, good and bad, go to `load_point_file` and to the inspector's `read_point_file`
(align3d_read_points); both must accept or refuse each one, with the same message after the path,
and accepted files must give the same points bit for bit."""
from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpp_build
import reader_cases

from align3d_rt.data.readers import load_point_file
from align3d_rt.errors import InputError

if cpp_build.missing_tools():
    pytest.skip(f"C++ toolchain missing ({', '.join(cpp_build.missing_tools())}); run scripts/setup.sh",
                allow_module_level=True)
pytest.importorskip("openvino")  # cpp_build configures with the openvino wheel's cmake folder


@pytest.fixture(scope="module")
def reader_tool() -> Path:
    return cpp_build.build("cpp") / "cpp" / "align3d_read_points"


@pytest.fixture(scope="module")
def compressed_good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import open3d as o3d

    path = tmp_path_factory.mktemp("o3d") / "c.pcd"
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(reader_cases.cloud()))
    assert o3d.io.write_point_cloud(str(path), cloud, write_ascii=False, compressed=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def case_files(tmp_path_factory: pytest.TempPathFactory, compressed_good: bytes) -> list[Path]:
    return reader_cases.write_cases(tmp_path_factory.mktemp("reader_cases"), compressed_good)


def python_read(path: Path) -> tuple[str, object]:
    try:
        return "ok", load_point_file(path, use_cache=False).points
    except InputError as err:
        return "error", str(err)


def cpp_read(tool: Path, paths: list[Path], out: Path, limit_mb: int | None = None) -> list[tuple[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(tool), "--out", str(out), *map(str, paths)]
    if limit_mb is not None:
        cmd = ["bash", "-c", f"ulimit -v {limit_mb * 1024}; exec \"$@\"", "_", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths), proc.stdout
    results: list[tuple[str, object]] = []
    for k, line in enumerate(lines):
        index, status, rest = line.split(" ", 2)
        assert int(index) == k
        results.append(("ok", np.load(out / f"{k}.npy")) if status == "ok" else ("error", rest))
    return results


def assert_same(path: Path, py: tuple[str, object], cpp: tuple[str, object]) -> None:
    assert py[0] == cpp[0], f"{path.name}: Python {py}, C++ {cpp}"
    if py[0] == "error":
        assert py[1] == cpp[1], f"{path.name}: messages differ"
    else:
        a, b = np.asarray(py[1]), np.asarray(cpp[1])
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, f"{path.name}: {a.shape} vs {b.shape}"
        assert a.tobytes() == b.tobytes(), f"{path.name}: points differ"


def test_every_case_read_alike(reader_tool: Path, case_files: list[Path], tmp_path: Path) -> None:
    cpp = cpp_read(reader_tool, case_files, tmp_path / "cpp")
    for path, c in zip(case_files, cpp, strict=True):
        assert_same(path, python_read(path), c)
    verdicts = {p.name: c[0] for p, c in zip(case_files, cpp, strict=True)}
    # The table holds both kinds, and the known defects are refused on both sides.
    assert sum(v == "ok" for v in verdicts.values()) >= 20 and sum(v == "error" for v in verdicts.values()) >= 80
    for name in ("ascii_text_rows.pcd", "ascii_short_rows.pcd", "ascii_text_rows.ply", "ascii_short_rows.ply",
                 "dtype_lt_f2.npy", "dtype_lt_i2.npy", "dtype_gt_f4.npy", "dtype_lt_c8.npy", "too_few.npy",
                 "ascii_too_few.pcd", "binary_too_few.pcd", "ascii_too_few.ply", "compressed_4gb_claim.pcd",
                 "ascii_text_in_rgb.pcd", "ascii_hex.pcd", "ascii_underscore.pcd", "coincident.npy",
                 "few_distinct_signed_zero.npy", "ascii_all_zero_rows.pcd"):
        assert verdicts[name] == "error", name
    for name in ("dtype_lt_f4.npy", "dtype_lt_f8.npy", "dtype_lt_i4.npy", "dtype_lt_i8.npy", "dtype_na_u1.npy",
                 "fortran.npy", "ascii_good.pcd", "binary_good.pcd", "compressed_good.pcd", "ascii_good.ply",
                 "binary_le.ply", "binary_be.ply", "binary_types.ply", "binary_types.pcd", "distinct_64.npy",
                 "distinct_late.npy", "binary_empty_element.ply"):  # 2^40 rows of no bytes: walked in no time
        assert verdicts[name] == "ok", name


def test_messages_name_the_cause(case_files: list[Path]) -> None:
    by_name = {p.name: p for p in case_files}
    expect = {
        "ascii_text_rows.pcd": "malformed PCD point row 0 (a value is not a number)",
        "ascii_short_rows.pcd": "malformed PCD point row 0 (2 values, FIELDS/COUNT need 3)",
        "ascii_text_rows.ply": "malformed PLY vertex row 0",
        "dtype_lt_c8.npy": "unreadable .npy (unsupported dtype '<c8'",
        "dtype_gt_f4.npy": "unreadable .npy (big-endian dtype '>f4' is not supported)",
        "truncated_40.npy": "unreadable .npy (truncated .npy header)",
        "shape_lie_big.npy": "unreadable .npy (truncated .npy: shape (1099511627776, 3) needs",
        "header_trailing.npy": "unreadable .npy (bad header: trailing text after the header dictionary)",
        "too_few.npy": "only 63 valid point(s); at least 64 are needed",
        "coincident.npy": "only 1 distinct point location(s) among 100 valid points; at least 64 are needed",
        "few_distinct_signed_zero.npy": "only 63 distinct point location(s) among 126 valid points",
        "ascii_all_zero_rows.pcd": "only 1 distinct point location(s) among 100 valid points",
        "compressed_4gb_claim.pcd": "corrupt binary_compressed PCD data (LZF)",
    }
    for name, text in expect.items():
        status, message = python_read(by_name[name])
        assert status == "error" and message.startswith(f"{by_name[name]}: {text}"), (name, message)


def test_special_files_say_what_they_are(reader_tool: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.ply"
    os.symlink(loop, loop)
    folder = tmp_path / "folder.pcd"
    folder.mkdir()
    paths = [fifo, loop, folder, Path("/dev/null"), tmp_path / "missing.npy", tmp_path / "dangling.pcd"]
    os.symlink(tmp_path / "nowhere", paths[-1])
    expect = ["not a regular file", "symbolic link loop", "not a regular file", "not a regular file",
              "point file not found", "point file not found"]
    cpp = cpp_read(reader_tool, paths, tmp_path / "out")
    for path, c, text in zip(paths, cpp, expect, strict=True):
        assert_same(path, python_read(path), c)
        assert c[1] == f"{path}: {text}"


def test_header_size_lies_allocate_nothing(reader_tool: Path, case_files: list[Path], tmp_path: Path) -> None:
    """A 4 GB binary_compressed claim, a 2^40-point npy/ply/pcd: refused within small memory on both sides."""
    lies = [p for p in case_files if p.name in ("compressed_4gb_claim.pcd", "shape_lie_big.npy", "binary_count_lie.ply",
                                                  "binary_points_lie.pcd", "ascii_width_huge.pcd", "huge_count.ply",
                                                  "shape_lie_overflow.npy")]
    assert len(lies) == 7
    cpp = cpp_read(reader_tool, lies, tmp_path / "out", limit_mb=400)  # ulimit -v: an allocation of GBs fails
    for path, c in zip(lies, cpp, strict=True):
        assert c[0] == "error" and "bad_alloc" not in str(c[1]), (path.name, c)
        tracemalloc.start()
        py = python_read(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 20 * 2**20, (path.name, peak)
        assert_same(path, py, c)


_GOOD = ("dtype_lt_f4.npy", "fortran.npy", "ascii_good.pcd", "binary_good.pcd", "compressed_good.pcd",
         "ascii_good.ply", "binary_le.ply", "binary_be.ply", "binary_faces_before.ply", "binary_types.pcd",
         "ascii_faces_before.ply", "ascii_count2.pcd")


_EDITS = (b"", b" ", b"\n", b"x", b"-", b"9", b"\x00", b"\xff", b"nan", b"e", b".", b"99999999999999", b"_", b"0x1",
          b"\r\n", b"\x0c", b"inf")


def _mutations(case_files: list[Path], folder: Path, count: int = 300) -> list[Path]:
    """``count`` good files truncated and with bytes replaced anywhere (header or body), seeded."""
    rng = np.random.default_rng(21)
    sources = {p.name: p.read_bytes() for p in case_files if p.name in _GOOD}
    assert len(sources) == len(_GOOD)
    paths = []
    for k in range(count):
        name = _GOOD[k % len(_GOOD)]
        data = bytearray(sources[name])
        for _ in range(int(rng.integers(0, 4))):
            at = int(rng.integers(0, len(data)))
            data[at:at + 1] = _EDITS[int(rng.integers(0, len(_EDITS)))]
        if rng.random() < 0.4:
            data = data[: int(rng.integers(1, len(data) + 1))]
        path = folder / f"m{k:03d}_{name}"
        path.write_bytes(bytes(data))
        paths.append(path)
    return paths


def test_mutated_files_read_alike(reader_tool: Path, case_files: list[Path], tmp_path: Path) -> None:
    """300 mutated good files: both readers agree on each."""
    paths = _mutations(case_files, tmp_path)
    cpp = cpp_read(reader_tool, paths, tmp_path / "out")
    for path, c in zip(paths, cpp, strict=True):
        assert_same(path, python_read(path), c)
    assert {c[0] for c in cpp} == {"ok", "error"}


def test_readers_clean_under_asan_ubsan(reader_tool: Path, case_files: list[Path], tmp_path: Path) -> None:
    """Every table case and mutation through the sanitizer build: no memory or UB report, same verdicts."""
    import os

    build = cpp_build.build("cpp-asan", "-DALIGN3D_SANITIZE=ON", "-DALIGN3D_READERS_ONLY=ON",
                            "-DCMAKE_BUILD_TYPE=Debug", "-DALIGN3D_GEOMETRY_TOOLS=OFF")
    paths = case_files + _mutations(case_files, tmp_path)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    (tmp_path / "asan").mkdir()
    proc = subprocess.run([str(build / "cpp" / "align3d_read_points"), "--out", str(tmp_path / "asan"),
                           *map(str, paths)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0 and "runtime error" not in proc.stderr and "Sanitizer" not in proc.stderr, \
        proc.stderr[-3000:]
    plain = cpp_read(reader_tool, paths, tmp_path / "plain")
    assert [line.split(" ", 2)[1:] for line in proc.stdout.splitlines()] == \
        [["ok", str(len(c[1]))] if c[0] == "ok" else ["error", c[1]] for c in plain]


def _tiff_claiming(path: Path, height: int, width: int) -> Path:
    """A small (10,10,3) f32 tiff whose ImageLength/ImageWidth tags are rewritten to claim more."""
    import struct

    import tifffile

    tifffile.imwrite(path, np.ones((10, 10, 3), np.float32), photometric="rgb")
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):
            fmt = "<H" if kind == 3 else "<I"
            struct.pack_into(fmt, data, at + 8, width if tag == 256 else height)
    path.write_bytes(bytes(data))
    return path


def test_tiff_header_sizes_checked_before_allocation(reader_tool: Path, tmp_path: Path) -> None:
    huge = _tiff_claiming(tmp_path / "huge.tiff", 60000, 60000)
    short = _tiff_claiming(tmp_path / "short.tiff", 1000, 1000)
    cpp = cpp_read(reader_tool, [huge, short], tmp_path / "out", limit_mb=400)
    assert cpp[0] == ("error", f"{huge}: xyz tiff of 60000x60000 cells is larger than the limit of 16777216 cells")
    assert cpp[1] == ("error", f"{short}: xyz tiff of 1000x1000 cells needs 12000000 data bytes, the file holds "
                               f"{short.stat().st_size} (truncated?)")
    for path, c in zip((huge, short), cpp, strict=True):
        tracemalloc.start()
        py = python_read(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 20 * 2**20 and py == c


def test_a_file_that_is_not_a_tiff_is_refused_alike(reader_tool: Path, tmp_path: Path) -> None:
    """Text, an empty file, two bytes, a PNG and a PCD named .tiff: the magic is checked before either side's TIFF
    library reads the file, so both refuse them with the same words; a real scan in either byte order passes."""
    import tifffile

    from align3d_rt.data.synthetic import render_mvtec_sample

    cases = {"text.tiff": b"hello\n", "empty.tiff": b"", "two.tif": b"II", "pcd.tiff": b"# .PCD v0.7\nFIELDS x y z\n",
             "png.tiff": b"\x89PNG\r\n\x1a\n" + bytes(64), "swapped.tiff": b"I*I\0" + bytes(64)}
    paths = []
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    scene, _, _ = render_mvtec_sample("ring", "hole", (120, 140), np.random.default_rng(3))
    tifffile.imwrite(tmp_path / "little.tiff", scene.astype("<f4"), byteorder="<")
    tifffile.imwrite(tmp_path / "big.tiff", scene.astype(">f4"), byteorder=">")
    scans = [tmp_path / "little.tiff", tmp_path / "big.tiff"]
    assert [p.read_bytes()[:4] for p in scans] == [b"II*\0", b"MM\0*"]
    cpp = cpp_read(reader_tool, paths + scans, tmp_path / "out")
    for path, c in zip(paths, cpp[:len(paths)], strict=True):
        assert c == ("error", f"{path}: unreadable tiff (not a TIFF file: bad magic)"), c
        assert python_read(path) == c
    for path, c in zip(scans, cpp[len(paths):], strict=True):
        py = python_read(path)
        assert c[0] == py[0] == "ok", (path.name, c, py)
        assert np.asarray(c[1]).tobytes() == np.asarray(py[1]).tobytes()
