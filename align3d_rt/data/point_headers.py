"""Point counts promised by .pcd/.ply headers, checked against what the file holds.

Open3D reads a truncated file without complaint and fills the missing points with zeros (or
uninitialised memory), so the header is parsed here (small and exact: only the fields that fix the
size of the point data) and a file that holds fewer points than it promises is refused.
"""
from __future__ import annotations

import struct
from pathlib import Path

from align3d_rt import errors

MIN_POINTS = 64  # fewer valid points than this cannot be rendered meaningfully (docs/runtime-spec.md §4.1)
_HEADER_LIMIT = 1 << 16  # headers are a few hundred bytes; more than this is not a header
_PLY_SIZES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
              "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def check_min_points(path: str | Path, n: int) -> None:
    """Refuse a cloud with fewer than MIN_POINTS valid points."""
    if n < MIN_POINTS:
        raise errors.input_error(path, f"only {n} valid point(s); at least {MIN_POINTS} are needed to render "
                                       f"and score a cloud")


def _split_header(data: bytes, end_marker: bytes, path: Path) -> tuple[list[str], bytes]:
    """Header lines (decoded) up to and including the line that starts with ``end_marker``, and the body."""
    pos = 0
    lines: list[str] = []
    while pos < min(len(data), _HEADER_LIMIT):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        raw = data[pos:nl]
        pos = nl + 1
        line = raw.decode("ascii", errors="replace").strip()
        lines.append(line)
        if line.split(" ", 1)[0].upper() == end_marker.decode().upper():
            return lines, data[pos:]
    raise errors.input_error(path, f"malformed header (no {end_marker.decode()} line)")


def _count_rows(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line.strip())


def _pcd_check(path: Path, data: bytes) -> None:
    lines, body = _split_header(data, b"DATA", path)
    fields: dict[str, list[str]] = {}
    for line in lines:
        if line and not line.startswith("#"):
            key, *values = line.split()
            fields[key.upper()] = values
    try:
        sizes = [int(v) for v in fields["SIZE"]]
        counts = [int(v) for v in fields.get("COUNT", ["1"] * len(sizes))]
        if "POINTS" in fields:
            points = int(fields["POINTS"][0])
        else:
            points = int(fields["WIDTH"][0]) * int(fields["HEIGHT"][0])
        kind = fields["DATA"][0].lower()
    except (KeyError, IndexError, ValueError):
        raise errors.input_error(path, "malformed .pcd header (SIZE/COUNT/POINTS/DATA)") from None
    if len(counts) != len(sizes) or points < 0:
        raise errors.input_error(path, "malformed .pcd header (SIZE and COUNT differ in length)")
    point_bytes = sum(s * c for s, c in zip(sizes, counts))
    if kind == "ascii":
        held = _count_rows(body)
    elif kind == "binary":
        held = len(body) // point_bytes if point_bytes else 0
    elif kind == "binary_compressed":
        if len(body) < 8:
            held = 0
        else:
            compressed, uncompressed = struct.unpack("<II", body[:8])
            complete = len(body) - 8 >= compressed
            held = uncompressed // point_bytes if (complete and point_bytes) else 0
    else:
        raise errors.input_error(path, f"unknown .pcd DATA type {kind!r}")
    if held < points:
        raise errors.input_error(path, f"header promises {points} points, the file holds {held} (truncated?)")


def _ply_check(path: Path, data: bytes) -> None:
    lines, body = _split_header(data, b"end_header", path)
    if not lines or lines[0] != "ply":
        raise errors.input_error(path, "not a .ply file (no 'ply' magic)")
    fmt = ""
    elements: list[list] = []  # [name, count, bytes per item or None when it has list properties]
    for line in lines[1:]:
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                elements.append([parts[1], int(parts[2]), 0])
            elif parts[0] == "property" and elements:
                if parts[1] == "list":
                    elements[-1][2] = None
                elif elements[-1][2] is not None:
                    elements[-1][2] += _PLY_SIZES[parts[1]]
        except (IndexError, ValueError, KeyError):
            raise errors.input_error(path, f"malformed .ply header line {line!r}") from None
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise errors.input_error(path, "no 'element vertex' in the .ply header")
    upto = elements[: names.index("vertex") + 1]
    vertices = int(upto[-1][1])
    if fmt == "ascii":
        need_rows = sum(int(e[1]) for e in upto)
        missing = need_rows - _count_rows(body)
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        if any(e[2] is None for e in upto):
            return  # list properties before/in the vertex block: its size is not fixed by the header
        missing_bytes = sum(int(e[1]) * int(e[2]) for e in upto) - len(body)
        vbytes = int(upto[-1][2]) or 1
        missing = -(-missing_bytes // vbytes) if missing_bytes > 0 else 0
    else:
        raise errors.input_error(path, f"unknown .ply format {fmt!r}")
    if missing > 0:
        raise errors.input_error(path, f"header promises {vertices} vertices, the file holds "
                                       f"{max(vertices - missing, 0)} (truncated?)")


def check_header_counts(path: str | Path) -> None:
    """Refuse a .pcd/.ply that holds fewer points than its header promises (one-line InputError)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise errors.input_error(path, f"unreadable ({err.strerror})") from None
    if path.suffix.lower() == ".pcd":
        _pcd_check(path, data)
    elif path.suffix.lower() == ".ply":
        _ply_check(path, data)
