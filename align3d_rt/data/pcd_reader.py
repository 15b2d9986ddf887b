""".pcd point files (ascii, binary, binary_compressed): x, y, z as f32, read by the same rules and
with the same messages as the C++ reader (cpp/src/readers.cpp; docs/runtime-spec.md §4.1).

The header is untrusted: counts are checked against the bytes really present before anything is
allocated, every ascii row must hold exactly the values FIELDS/COUNT declare and each must be a
number (Open3D reads text or short rows as zeros, so it is not used for the points).
"""
from __future__ import annotations

import os
import struct

import numpy as np

from align3d_rt.data.point_files import (
    Lines,
    all_numbers,
    ascii_table,
    fail,
    finite_points,
    is_number,
    parse_count,
    printable,
)

LZF_MAX_RATIO = 88  # one 3-byte LZF back reference yields at most 264 bytes


def _dtype(kind: str, size: int) -> str | None:
    table = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8",
             ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}
    return table.get((kind, size))


def lzf_decompress(src: bytes, out_len: int) -> bytes | None:
    """liblzf decompression (PCL's binary_compressed); None when the data is corrupt or not out_len long."""
    out = bytearray(out_len)
    ip = op = 0
    n_in = len(src)
    while ip < n_in:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:
            n = ctrl + 1
            if ip + n > n_in or op + n > out_len:
                return None
            out[op:op + n] = src[ip:ip + n]
            ip += n
            op += n
        else:
            length = ctrl >> 5
            if length == 7:
                if ip >= n_in:
                    return None
                length += src[ip]
                ip += 1
            if ip >= n_in:
                return None
            back = ((ctrl & 0x1F) << 8) + src[ip] + 1
            ip += 1
            length += 2
            if back > op or op + length > out_len:
                return None
            for _ in range(length):
                out[op] = out[op - back]
                op += 1
    return bytes(out) if op == out_len else None


def read_pcd(path: str | os.PathLike[str], data: bytes) -> np.ndarray:
    """The finite points (N,3) f32 of a .pcd file's bytes."""
    lines = Lines(data)
    fields: list[bytes] = []
    sizes: list[int] = []
    counts: list[int] = []
    types: list[str] = []
    width, height, points, have_points, mode = 0, 1, 0, False, b""
    while (line := lines.next()) is not None:
        tok = line.split()
        if not tok or tok[0][:1] == b"#":
            continue
        key = tok[0]
        if key in (b"VERSION", b"VIEWPOINT"):
            continue
        if key in (b"FIELDS", b"COLUMNS"):
            fields = tok[1:]
        elif key in (b"SIZE", b"COUNT"):
            values = []
            for t in tok[1:]:
                v = parse_count(t)
                if v is None or v == 0 or v > 65536:
                    raise fail(path, f"malformed PCD header (bad {key.decode()})")
                values.append(v)
            if key == b"SIZE":
                sizes = values
            else:
                counts = values
        elif key == b"TYPE":
            types = []
            for t in tok[1:]:
                if len(t) != 1 or t not in b"FIU":
                    raise fail(path, "malformed PCD header (bad TYPE)")
                types.append(t.decode())
        elif key in (b"WIDTH", b"HEIGHT", b"POINTS"):
            v = parse_count(tok[1]) if len(tok) == 2 else None
            if v is None:
                raise fail(path, f"malformed PCD header (bad {key.decode()})")
            if key == b"WIDTH":
                width = v
            elif key == b"HEIGHT":
                height = v
            else:
                points, have_points = v, True
        elif key == b"DATA":
            if len(tok) != 2:
                raise fail(path, "malformed PCD header (bad DATA line)")
            mode = tok[1]
            break
        else:
            raise fail(path, f"malformed PCD header (unexpected line '{printable(line)}')")
    if not mode:
        raise fail(path, "malformed PCD header (no DATA line)")
    if mode not in (b"ascii", b"binary", b"binary_compressed"):
        raise fail(path, f"malformed PCD header (unknown DATA '{printable(mode)}')")
    if not fields or len(sizes) != len(fields) or len(types) != len(fields):
        raise fail(path, "malformed PCD header (FIELDS, SIZE and TYPE differ in length)")
    if not counts:
        counts = [1] * len(fields)
    if len(counts) != len(fields):
        raise fail(path, "malformed PCD header (COUNT differs in length from FIELDS)")
    if not have_points:
        if width * height > (1 << 40):
            raise fail(path, "malformed PCD header (WIDTH x HEIGHT is too large)")
        points = width * height
    dtypes: list[str] = []
    offsets: list[int] = []
    value_offsets: list[int] = []
    stride = n_values = 0
    fx = fy = fz = -1
    for k, name in enumerate(fields):
        dt = _dtype(types[k], sizes[k])
        if dt is None:
            raise fail(path, f"malformed PCD header (unsupported TYPE/SIZE {types[k]}{sizes[k]})")
        dtypes.append(dt)
        if name == b"x":
            fx = k
        if name == b"y":
            fy = k
        if name == b"z":
            fz = k
        offsets.append(stride)
        value_offsets.append(n_values)
        stride += sizes[k] * counts[k]
        n_values += counts[k]
    if min(fx, fy, fz) < 0:
        raise fail(path, "PCD has no x, y and z fields")
    xyz_fields = (fx, fy, fz)
    if any(types[f] in "IU" and sizes[f] == 8 for f in xyz_fields):
        raise fail(path, "malformed PCD header (64-bit integer coordinates)")
    promise = f"header promises {points} points, the file holds "
    pos = lines.pos
    if mode == b"ascii":
        xyz = _ascii_rows(path, data, pos, points, n_values, [value_offsets[f] for f in xyz_fields], promise)
    elif mode == b"binary":
        have = (len(data) - pos) // stride
        if have < points:
            raise fail(path, promise + str(have))
        xyz = np.stack([np.ndarray((points,), dtype=dtypes[f], buffer=data, offset=pos + offsets[f], strides=(stride,))
                        .astype(np.float64) for f in xyz_fields], axis=1) if points else np.zeros((0, 3))
    else:
        if len(data) - pos < 8:
            raise fail(path, promise + "0 (compressed block truncated)")
        csize, rsize = struct.unpack_from("<II", data, pos)
        pos += 8
        if len(data) - pos < csize:
            raise fail(path, promise + "fewer (compressed block truncated)")
        if rsize != points * stride:
            raise fail(path, promise + f"{rsize // stride} (uncompressed size disagrees)")
        raw = None if rsize > LZF_MAX_RATIO * csize else lzf_decompress(data[pos:pos + csize], rsize)
        if raw is None:
            raise fail(path, "corrupt binary_compressed PCD data (LZF)")
        xyz = np.stack([np.ndarray((points,), dtype=dtypes[f], buffer=raw, offset=offsets[f] * points,
                                   strides=(sizes[f] * counts[f],)).astype(np.float64) for f in xyz_fields],
                       axis=1) if points else np.zeros((0, 3))
    return finite_points(path, xyz, points)


def _ascii_rows(path: str | os.PathLike[str], data: bytes, pos: int, points: int, n_values: int,
                columns: list[int], promise: str) -> np.ndarray:
    """x, y, z (f64) of the first ``points`` non-blank rows; each row holds exactly n_values numbers."""
    table = ascii_table(data[pos:], points, n_values)
    if table is not None:  # every row well formed: the vectorised path
        return table[:, columns]
    rows: list[list[bytes]] = []
    if points:
        for raw in data[pos:].split(b"\n"):
            tok = raw.split()
            if tok:
                rows.append(tok)
                if len(rows) == points:
                    break
    if any(len(tok) != n_values for tok in rows) or not all_numbers([t for tok in rows for t in tok]):
        for i, tok in enumerate(rows):  # name the first bad row
            if len(tok) != n_values:
                raise fail(path, f"malformed PCD point row {i} ({len(tok)} values, FIELDS/COUNT need {n_values})")
            if not all(is_number(t) for t in tok):
                raise fail(path, f"malformed PCD point row {i} (a value is not a number)")
    if len(rows) < points:
        raise fail(path, promise + str(len(rows)))
    return np.array([[float(tok[c]) for c in columns] for tok in rows], dtype=np.float64).reshape(-1, 3)
