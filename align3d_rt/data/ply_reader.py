""".ply point files (ascii, binary little/big endian): the vertex x, y, z as f32, read by the same
rules and with the same messages as the C++ reader (cpp/src/readers.cpp; docs/runtime-spec.md §4.1).

Elements before the vertices are walked (their rows must be there and, in ascii, be numbers);
elements after them are not read. An ascii row must hold exactly the values its properties need.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from align3d_rt.data.point_files import Lines, ascii_table, fail, finite_points, is_number, parse_count, printable

_SCALARS = {b"char": "i1", b"int8": "i1", b"uchar": "u1", b"uint8": "u1", b"short": "i2", b"int16": "i2",
            b"ushort": "u2", b"uint16": "u2", b"int": "i4", b"int32": "i4", b"uint": "u4", b"uint32": "u4",
            b"float": "f4", b"float32": "f4", b"double": "f8", b"float64": "f8"}


@dataclass
class _Property:
    name: bytes
    kind: str
    count_kind: str | None = None  # set for list properties


@dataclass
class _Element:
    name: bytes
    count: int
    props: list[_Property] = field(default_factory=list)


def _header(path: str | os.PathLike[str], lines: Lines) -> tuple[str, list[_Element]]:
    if lines.next() != b"ply":
        raise fail(path, "not a PLY file (no 'ply' magic line)")
    fmt, ended = None, False
    elements: list[_Element] = []
    while (line := lines.next()) is not None:
        tok = line.split()
        if not tok or tok[0] in (b"comment", b"obj_info"):
            continue
        if tok[0] == b"end_header":
            ended = True
            break
        if tok[0] == b"format" and len(tok) == 3:
            if tok[1] not in (b"ascii", b"binary_little_endian", b"binary_big_endian"):
                raise fail(path, f"malformed PLY header (unknown format '{printable(tok[1])}')")
            fmt = tok[1].decode()
        elif tok[0] == b"element" and len(tok) == 3:
            count = parse_count(tok[2])
            if count is None:
                raise fail(path, f"malformed PLY header (bad element count '{printable(tok[2])}')")
            elements.append(_Element(tok[1], count))
        elif tok[0] == b"property" and elements:
            if len(tok) == 5 and tok[1] == b"list":
                ck, kind = _SCALARS.get(tok[2]), _SCALARS.get(tok[3])
                if ck is None or kind is None or ck[0] == "f":
                    raise fail(path, f"malformed PLY header (bad list property '{printable(line)}')")
                elements[-1].props.append(_Property(tok[4], kind, ck))
            elif len(tok) == 3 and tok[1] in _SCALARS:
                elements[-1].props.append(_Property(tok[2], _SCALARS[tok[1]]))
            else:
                raise fail(path, f"malformed PLY header (bad property line '{printable(line)}')")
        else:
            raise fail(path, f"malformed PLY header (unexpected line '{printable(line)}')")
    if not ended:
        raise fail(path, "malformed PLY header (no end_header)")
    if fmt is None:
        raise fail(path, "malformed PLY header (no format line)")
    return fmt, elements


def read_ply(path: str | os.PathLike[str], data: bytes) -> np.ndarray:
    """The finite points (N,3) f32 of a .ply file's bytes."""
    lines = Lines(data)
    fmt, elements = _header(path, lines)
    vertex = next((k for k, e in enumerate(elements) if e.name == b"vertex"), None)
    if vertex is None:
        raise fail(path, "unreadable or empty point cloud (PLY has no vertex element)")
    cols = {}
    for k, p in enumerate(elements[vertex].props):
        if p.count_kind is None and p.name in (b"x", b"y", b"z"):
            cols[p.name] = k
    if len(cols) < 3:
        raise fail(path, "PLY vertex element lacks x, y or z")
    xyz_cols = [cols[b"x"], cols[b"y"], cols[b"z"]]
    pos = lines.pos
    xyz = np.zeros((0, 3))
    simple = vertex == 0 and all(p.count_kind is None for p in elements[0].props)
    table = ascii_table(data[pos:], elements[0].count, len(elements[0].props)) if fmt == "ascii" and simple else None
    if table is not None:  # ascii vertices first, every row well formed: the vectorised path
        return finite_points(path, table[:, xyz_cols], elements[0].count)
    for e in elements[:vertex + 1]:
        want = e is elements[vertex]
        if fmt == "ascii":
            pos, values = _ascii_element(path, data, pos, e, xyz_cols if want else None)
        else:
            pos, values = _binary_element(path, data, pos, e, "<" if fmt == "binary_little_endian" else ">",
                                          xyz_cols if want else None)
        if want:
            xyz = values
    return finite_points(path, xyz, elements[vertex].count)


def _short(path: str | os.PathLike[str], e: _Element, i: int) -> Exception:
    return fail(path, f"header promises {e.count} {printable(e.name)} rows, the file holds {i}")


def _ascii_element(path: str | os.PathLike[str], data: bytes, pos: int, e: _Element,
                   cols: list[int] | None) -> tuple[int, np.ndarray]:
    out: list[list[float]] = []  # grows with the rows really present (the count is untrusted)
    lines = Lines(data, pos)
    vals = [0.0] * len(e.props)
    for i in range(e.count):
        while (row := lines.next()) is not None and not row.split():
            pass
        if row is None:
            raise _short(path, e, i)
        tok = row.split()
        bad = fail(path, f"malformed PLY {printable(e.name)} row {i}")
        t = 0
        for k, p in enumerate(e.props):
            if t >= len(tok) or not is_number(tok[t]):
                raise bad
            v = float(tok[t])
            t += 1
            if p.count_kind is not None:
                if not (0 <= v <= 1e6 and v == math.floor(v)):
                    raise fail(path, f"malformed PLY list length in {printable(e.name)} row {i}")
                items = tok[t:t + int(v)]
                if len(items) < int(v) or not all(is_number(x) for x in items):
                    raise bad
                t += int(v)
            vals[k] = v
        if t != len(tok):
            raise bad
        if cols:
            out.append([vals[c] for c in cols])
    return lines.pos, np.array(out, dtype=np.float64).reshape(-1, 3)


def _binary_element(path: str | os.PathLike[str], data: bytes, pos: int, e: _Element, order: str,
                    cols: list[int] | None) -> tuple[int, np.ndarray]:
    if all(p.count_kind is None for p in e.props):  # fixed row size: one strided view
        dtype = np.dtype([(f"p{k}", order + p.kind) for k, p in enumerate(e.props)])
        have = (len(data) - pos) // dtype.itemsize if dtype.itemsize else e.count
        if have < e.count:
            raise _short(path, e, have)
        rows = np.frombuffer(data, dtype=dtype, count=e.count, offset=pos) if e.count and dtype.itemsize else None
        pos += e.count * dtype.itemsize
        if not cols:
            return pos, np.zeros((0, 3))
        if rows is None:
            return pos, np.zeros((e.count, 3))
        return pos, np.stack([rows[f"p{c}"].astype(np.float64) for c in cols], axis=1)
    out: list[list[float]] = []
    vals = [0.0] * len(e.props)
    for i in range(e.count):
        for k, p in enumerate(e.props):
            dt = np.dtype(order + (p.count_kind or p.kind))
            if len(data) - pos < dt.itemsize:
                raise _short(path, e, i)
            v = float(np.frombuffer(data, dtype=dt, count=1, offset=pos)[0])
            pos += dt.itemsize
            if p.count_kind is not None:
                if v < 0:
                    raise fail(path, f"malformed PLY list length in {printable(e.name)} row {i}")
                nbytes = int(v) * np.dtype(p.kind).itemsize
                if len(data) - pos < nbytes:
                    raise _short(path, e, i)
                pos += nbytes
            vals[k] = v
        if cols:
            out.append([vals[c] for c in cols])
    return pos, np.array(out, dtype=np.float64).reshape(-1, 3)
