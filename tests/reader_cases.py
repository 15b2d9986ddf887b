"""Good and bad point files (.npy/.pcd/.ply) for the Python/C++ reader parity tests: every dtype,
order and byte order of .npy, header lies, truncations, short and text rows, too few points."""
from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

GOOD_N = 100


def cloud(n: int = GOOD_N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.05, size=(n, 3))


def npy_bytes(descr: str, shape: tuple, data: bytes, fortran: bool = False, version: int = 1,
              header: str | None = None) -> bytes:
    """A .npy with any header (lies included): magic, version, header dict, data."""
    text = header if header is not None else (
        f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}")
    text += " " * ((64 - (len(text) + 11) % 64) % 64) + "\n"
    raw = text.encode("latin-1")
    size = struct.pack("<H", len(raw)) if version == 1 else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes([version, 0]) + size + raw + data


def npy_cases() -> dict[str, bytes]:
    pts = cloud()
    cases: dict[str, bytes] = {}
    for dt in ("<f4", "<f8", "<i4", "<i8", "|u1", "<f2", "<i2", "<u2", "|i1", "<u4", "<u8", "<c8", "<c16", "|b1",
               ">f4", ">f8", ">i4", ">i8", "=f4", ">u1", "<u1", "=u1", "<U3", "|O"):
        if dt == "|O":
            data = b"\0" * (GOOD_N * 3 * 8)
        else:
            data = (pts * 1000 if np.dtype(dt).kind in "iu" else pts).astype(np.dtype(dt)).tobytes()
        safe = {"<": "lt_", ">": "gt_", "|": "na_", "=": "eq_"}[dt[0]] + dt[1:]
        cases[f"dtype_{safe}"] = npy_bytes(dt, pts.shape, data)
    f4 = pts.astype("<f4")
    cases["fortran"] = npy_bytes("<f4", f4.shape, np.asfortranarray(f4).tobytes(order="F"), fortran=True)
    cases["v2"] = npy_bytes("<f4", f4.shape, f4.tobytes(), version=2)
    cases["v3"] = npy_bytes("<f4", f4.shape, f4.tobytes(), version=3)
    cases["v4"] = npy_bytes("<f4", f4.shape, f4.tobytes(), version=4)
    for shape in ((GOOD_N, 4), (GOOD_N * 3,), (GOOD_N, 3, 1), (0, 3), (), (3, GOOD_N)):
        count = int(np.prod(shape)) if shape else 1
        data = cloud(max(count, 1)).ravel()[:count].astype("<f4").tobytes()
        cases[f"shape_{'x'.join(map(str, shape)) or 'scalar'}"] = npy_bytes("<f4", shape, data)
    good = npy_bytes("<f4", f4.shape, f4.tobytes())
    for cut in (0, 5, 9, 40, len(good) - 1, len(good) - 600):
        cases[f"truncated_{cut}"] = good[:cut]
    cases["shape_lie_big"] = npy_bytes("<f4", (2**40, 3), f4.tobytes())
    cases["shape_lie_overflow"] = npy_bytes("<f8", (2**62, 2**10), f4.tobytes())
    cases["shape_lie_huge_digit"] = npy_bytes("<f4", (0,), b"", header="{'descr': '<f4', 'fortran_order': False, "
                                              "'shape': (99999999999999999999999, 3), }")
    cases["bad_magic"] = b"\x93NUMPX" + good[6:]
    for name, header in {
        "no_shape": "{'descr': '<f4', 'fortran_order': False, }",
        "extra_key": "{'descr': '<f4', 'fortran_order': False, 'shape': (100, 3), 'x': 1}",
        "trailing": "{'descr': '<f4', 'fortran_order': False, 'shape': (100, 3), } junk",
        "structured": "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (100, 3), }",
        "fortran_word": "{'descr': '<f4', 'fortran_order': 0, 'shape': (100, 3), }",
        "negative_dim": "{'descr': '<f4', 'fortran_order': False, 'shape': (-100, 3), }",
        "unterminated": "{'descr': '<f4, 'fortran_order': False, 'shape': (100, 3)}",
        "binary_key": "{'d\x01\xffr': '<f4', 'fortran_order': False, 'shape': (100, 3), }",
        "long_L": "{'descr': '<f4', 'fortran_order': False, 'shape': (100L, 3L), }",
        "double_quotes": '{"descr": "<f4", "fortran_order": False, "shape": (100, 3), }',
    }.items():
        cases[f"header_{name}"] = npy_bytes("", (), f4.tobytes(), header=header)
    nan = pts.astype("<f4")
    nan[::2] = np.nan
    nan[1::4] = 0.0
    cases["nan_and_zero_rows"] = npy_bytes("<f4", nan.shape, nan.tobytes())
    few = pts[:63].astype("<f4")
    cases["too_few"] = npy_bytes("<f4", few.shape, few.tobytes())
    cases["all_zero"] = npy_bytes("<f4", f4.shape, np.zeros_like(f4).tobytes())
    big = (pts * 1e39).astype("<f8")
    cases["f64_overflow"] = npy_bytes("<f8", big.shape, big.tobytes())
    same = np.tile(np.array([[0.5, -0.25, 1.0]], "<f4"), (GOOD_N, 1))
    cases["coincident"] = npy_bytes("<f4", same.shape, same.tobytes())  # 100 valid points at one location
    signed = np.concatenate([pts[:63], pts[:63]]).astype("<f4")
    signed[:63, 0], signed[63:, 0] = 0.0, -0.0  # 126 rows, 63 locations: -0.0 is the same place as 0.0
    cases["few_distinct_signed_zero"] = npy_bytes("<f4", signed.shape, signed.tobytes())
    enough = np.concatenate([pts[:64], pts[:64]]).astype("<f4")
    cases["distinct_64"] = npy_bytes("<f4", enough.shape, enough.tobytes())  # accepted: 64 locations
    late = np.concatenate([np.tile(pts[:1], (5000, 1)), pts]).astype("<f4")  # the locations come after 5000 rows
    cases["distinct_late"] = npy_bytes("<f4", late.shape, late.tobytes())
    return cases


def _pcd_header(fields: str = "x y z", size: str = "4 4 4", type_: str = "F F F", count: str | None = "1 1 1",
                width: int | str = GOOD_N, points: int | str | None = GOOD_N, data: str = "ascii",
                extra: str = "") -> str:
    lines = ["# .PCD v0.7", "VERSION 0.7", f"FIELDS {fields}", f"SIZE {size}", f"TYPE {type_}"]
    if count is not None:
        lines.append(f"COUNT {count}")
    lines += [f"WIDTH {width}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0"]
    if points is not None:
        lines.append(f"POINTS {points}")
    return "\n".join(lines) + extra + f"\nDATA {data}\n"


def _rows(pts: np.ndarray, fmt: Callable[[np.ndarray], str] = lambda r: " ".join(repr(float(v)) for v in r)) -> str:
    return "".join(fmt(r) + "\n" for r in pts)


def pcd_cases(compressed_good: bytes) -> dict[str, bytes]:
    pts = cloud()
    f4 = pts.astype("<f4")
    cases: dict[str, bytes] = {}
    good_rows = _rows(pts)
    cases["ascii_good"] = (_pcd_header() + good_rows).encode()
    cases["ascii_short_rows"] = (_pcd_header() + _rows(pts[:, :2])).encode()
    cases["ascii_one_short_row"] = (_pcd_header() + _rows(pts[:50]) + "0.1 0.2\n" + _rows(pts[51:])).encode()
    cases["ascii_text_rows"] = (_pcd_header() + "hello world foo\n" * GOOD_N).encode()
    cases["ascii_all_zero_rows"] = (_pcd_header() + "0 0 -0\n" * GOOD_N).encode()  # kept rows, one location
    cases["ascii_text_in_rgb"] = (_pcd_header("x y z rgb", "4 4 4 4", "F F F F", "1 1 1 1")
                                  + _rows(pts, lambda r: " ".join(map(str, r)) + " red")).encode()
    cases["ascii_extra_values"] = (_pcd_header() + _rows(pts, lambda r: " ".join(map(str, r)) + " 7")).encode()
    cases["ascii_hex"] = (_pcd_header() + _rows(pts[:99]) + "0x1p3 1 2\n").encode()
    cases["ascii_underscore"] = (_pcd_header() + _rows(pts[:99]) + "1_0 1 2\n").encode()
    cases["ascii_nan_paren"] = (_pcd_header() + _rows(pts[:99]) + "nan(1) 1 2\n").encode()
    cases["ascii_points_lie"] = (_pcd_header(points=GOOD_N * 2) + good_rows).encode()
    cases["ascii_points_fewer"] = (_pcd_header(points=70) + good_rows).encode()
    cases["ascii_no_points_line"] = (_pcd_header(points=None) + good_rows).encode()
    cases["ascii_width_huge"] = (_pcd_header(points=None, width=2**40) + good_rows).encode()
    cases["ascii_nan_inf_rows"] = (_pcd_header() + _rows(pts[:40]) + "nan 1 2\n-inf 1 2\nInfinity 0 0\n"
                                   + _rows(pts[43:])).encode()
    cases["ascii_zero_rows"] = (_pcd_header() + "0 0 0\n" * 50 + _rows(pts[50:])).encode()
    cases["ascii_too_few"] = (_pcd_header(points=10, width=10) + _rows(pts[:10])).encode()
    cases["ascii_count2"] = (_pcd_header("x y z normal", "4 4 4 4", "F F F F", "1 1 1 2")
                             + _rows(pts, lambda r: " ".join(map(str, r)) + " 1 2")).encode()
    cases["ascii_blank_lines"] = (_pcd_header() + good_rows.replace("\n", "\n\n  \n")).encode()
    cases["ascii_crlf"] = (_pcd_header() + good_rows).replace("\n", "\r\n").encode()
    cases["no_data"] = _pcd_header().replace("DATA ascii\n", "").encode()
    cases["unknown_data"] = (_pcd_header(data="binary_lzma") + good_rows).encode()
    cases["no_xyz"] = (_pcd_header("a b c") + good_rows).encode()
    cases["size_mismatch"] = (_pcd_header(size="4 4") + good_rows).encode()
    cases["count_mismatch"] = (_pcd_header(count="1 1") + good_rows).encode()
    cases["no_count"] = (_pcd_header(count=None) + good_rows).encode()
    cases["bad_type"] = (_pcd_header(type_="F F D") + good_rows).encode()
    cases["type_size_f2"] = (_pcd_header(size="2 4 4") + good_rows).encode()
    cases["type_size_i3"] = (_pcd_header("x y z w", "4 4 4 3", "F F F I", "1 1 1 1")
                             + _rows(pts, lambda r: " ".join(map(str, r)) + " 1")).encode()
    cases["bad_size"] = (_pcd_header(size="4 4 0") + good_rows).encode()
    cases["bad_points"] = (_pcd_header(points="-5") + good_rows).encode()
    cases["unexpected_line"] = (_pcd_header(extra="\nCOLOR \x01\xff red") + good_rows).encode("latin-1")
    cases["int64_xyz"] = (_pcd_header(size="8 4 4", type_="I F F") + good_rows).encode()
    bin_head = _pcd_header(data="binary").encode()
    cases["binary_good"] = bin_head + f4.tobytes()
    cases["binary_truncated"] = bin_head + f4.tobytes()[:-7]
    cases["binary_points_lie"] = _pcd_header(points=10**9, data="binary").encode() + f4.tobytes()
    mixed = np.rec.fromarrays([pts[:, 0], (pts[:, 1] * 1e4).astype("<i2"), (np.abs(pts[:, 2]) * 1e3).astype("u1"),
                               np.arange(GOOD_N, dtype="<i8")],
                              dtype=[("x", "<f8"), ("y", "<i2"), ("z", "u1"), ("i", "<i8")])
    cases["binary_types"] = (_pcd_header("x y z i", "8 2 1 8", "F I U I", "1 1 1 1", data="binary").encode()
                             + mixed.tobytes())
    cases["binary_count3"] = (_pcd_header("x y z", "4 4 4", "F F F", "1 3 1", data="binary").encode()
                              + np.repeat(f4, [1, 3, 1], axis=1).tobytes())
    nan = f4.copy()
    nan[::3] = np.inf
    cases["binary_nonfinite"] = bin_head + nan.tobytes()
    cases["binary_too_few"] = _pcd_header(points=20, width=20, data="binary").encode() + f4[:20].tobytes()
    cases["compressed_good"] = compressed_good
    head, _, body = compressed_good.partition(b"DATA binary_compressed\n")
    head += b"DATA binary_compressed\n"
    csize, rsize = struct.unpack_from("<II", body)
    cases["compressed_4gb_claim"] = head.replace(f"POINTS {GOOD_N}".encode(), b"POINTS 357913941").replace(
        f"WIDTH {GOOD_N}".encode(), b"WIDTH 357913941") + struct.pack("<II", csize, 357913941 * 12) + body[8:]
    cases["compressed_size_disagrees"] = head + struct.pack("<II", csize, rsize + 12) + body[8:]
    cases["compressed_truncated"] = head + body[: 8 + csize // 2]
    cases["compressed_no_sizes"] = head + body[:5]
    corrupt = bytearray(body)
    corrupt[9:15] = b"\xff" * 6
    cases["compressed_corrupt"] = head + bytes(corrupt)
    return cases


def _ply_header(fmt: str = "ascii", vertex: int | str = GOOD_N,
                props: str = "float x\nproperty float y\nproperty float z", before: str = "", after: str = "") -> str:
    return (f"ply\nformat {fmt} 1.0\ncomment test\n{before}element vertex {vertex}\nproperty {props}\n{after}"
            "end_header\n")


def ply_cases() -> dict[str, bytes]:
    pts = cloud()
    f4 = pts.astype("<f4")
    rows = _rows(pts)
    cases: dict[str, bytes] = {}
    cases["ascii_good"] = (_ply_header() + rows).encode()
    cases["ascii_short_rows"] = (_ply_header() + _rows(pts[:, :2])).encode()
    cases["ascii_text_rows"] = (_ply_header() + "a b c\n" * GOOD_N).encode()
    cases["ascii_extra_token"] = (_ply_header() + _rows(pts, lambda r: " ".join(map(str, r)) + " 9")).encode()
    cases["ascii_truncated"] = (_ply_header() + _rows(pts[:80])).encode()
    cases["ascii_faces_after"] = (_ply_header(after="element face 2\nproperty list uchar int vertex_indices\n")
                                  + rows + "3 0 1 2\n3 x y z\n").encode()
    cases["ascii_faces_before"] = (_ply_header(before="element face 2\nproperty list uchar int vertex_indices\n")
                                   + "3 0 1 2\n3 1 2 3\n" + rows).encode()
    cases["ascii_faces_before_text"] = (_ply_header(before="element face 2\nproperty list uchar int vertex_indices\n")
                                        + "3 0 1 2\n3 one two three\n" + rows).encode()
    cases["ascii_list_fraction"] = (_ply_header(before="element face 1\nproperty list uchar int vertex_indices\n")
                                    + "2.5 0 1\n" + rows).encode()
    cases["ascii_double_props"] = (_ply_header(props="double x\nproperty double y\nproperty double z\n"
                                                     "property uchar red")
                                   + _rows(pts, lambda r: " ".join(repr(float(v)) for v in r) + " 255")).encode()
    cases["ascii_nan_rows"] = (_ply_header() + "nan 0 0\n" * 30 + "0 0 0\n" * 10 + _rows(pts[40:])).encode()
    cases["ascii_too_few"] = (_ply_header(vertex=30) + _rows(pts[:30])).encode()
    cases["no_magic"] = ("plx" + (_ply_header() + rows)[3:]).encode()
    cases["no_end_header"] = (_ply_header() + rows).replace("end_header", "end_heade").encode()
    cases["no_format"] = (_ply_header() + rows).replace("format ascii 1.0\n", "").encode()
    cases["unknown_format"] = (_ply_header(fmt="binary_middle_endian") + rows).encode()
    cases["bad_count"] = (_ply_header(vertex="-3") + rows).encode()
    cases["huge_count"] = (_ply_header(vertex=2**40) + rows).encode()
    cases["no_vertex"] = (_ply_header() + rows).replace("element vertex", "element point").encode()
    cases["no_z"] = (_ply_header(props="float x\nproperty float y\nproperty float w") + rows).encode()
    cases["bad_property"] = (_ply_header(props="float16 x\nproperty float y\nproperty float z") + rows).encode()
    cases["float_list_count"] = (_ply_header(after="element face 1\nproperty list float int idx\n") + rows).encode()
    cases["odd_header_line"] = (_ply_header(after="weird \x02\xfe line\n") + rows).encode("latin-1")
    cases["binary_le"] = _ply_header("binary_little_endian").encode() + f4.tobytes()
    cases["binary_be"] = _ply_header("binary_big_endian").encode() + f4.astype(">f4").tobytes()
    cases["binary_truncated"] = _ply_header("binary_little_endian").encode() + f4.tobytes()[:-5]
    cases["binary_count_lie"] = _ply_header("binary_little_endian", vertex=10**12).encode() + f4.tobytes()
    mixed = np.rec.fromarrays([(pts[:, 0] * 1e4).astype("<i2"), pts[:, 1], (pts[:, 2] * 1e6).astype("<i4"),
                               np.full(GOOD_N, 7, "u1")],
                              dtype=[("x", "<i2"), ("y", "<f8"), ("z", "<i4"), ("r", "u1")])
    cases["binary_types"] = _ply_header("binary_little_endian",
                                        props="short x\nproperty double y\nproperty int z\nproperty uchar red"
                                        ).encode() + mixed.tobytes()
    face = struct.pack("<Biii", 3, 0, 1, 2)
    cases["binary_faces_before"] = (_ply_header("binary_little_endian",
                                                before="element face 2\nproperty list uchar int vertex_indices\n")
                                    .encode() + face * 2 + f4.tobytes())
    cases["binary_faces_before_short"] = (_ply_header("binary_little_endian",
                                                      before="element face 2\nproperty list uchar int vertex_indices\n")
                                          .encode() + face)
    cases["binary_list_in_vertex"] = (_ply_header("binary_little_endian",
                                                  props="float x\nproperty float y\nproperty float z\n"
                                                        "property list uchar float extra").encode()
                                      + b"".join(r.tobytes() + struct.pack("<Bf", 1, 0.5) for r in f4))
    nan = f4.copy()
    nan[:50] = np.nan
    cases["binary_nonfinite"] = _ply_header("binary_little_endian").encode() + nan.tobytes()
    cases["binary_zero_vertices"] = _ply_header("binary_little_endian", vertex=0).encode()
    cases["binary_empty_element"] = (_ply_header("binary_little_endian", before="element nothing 1099511627776\n")
                                     .encode() + f4.tobytes())
    return cases


def write_cases(folder: Path, compressed_good: bytes) -> list[Path]:
    """Every case as a file under ``folder``, sorted by name."""
    out = []
    for suffix, cases in ((".npy", npy_cases()), (".pcd", pcd_cases(compressed_good)), (".ply", ply_cases())):
        cases = {**cases, "empty": b"", "bom": b"\xef\xbb\xbf" + next(iter(cases.values())), "text": b"hello\n"}
        for name, data in cases.items():
            path = folder / f"{name}{suffix}"
            path.write_bytes(data)
            out.append(path)
    return sorted(out)
