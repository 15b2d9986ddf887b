"""What the point-file readers share (docs/runtime-spec.md §4.1): opening only regular files,
number tokens, quoting file bytes in messages, and the point rows -> finite f32 points step.

Every rule here is mirrored by the C++ inspector (cpp/src/readers.cpp); the messages are the same
text after ``PATH: `` (tests/test_reader_parity.py feeds both the same files).
"""
from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import numpy as np

from align3d_rt import errors

MAX_COUNT = 1 << 40  # largest point / element count a header may declare
_NUMBER_TEXT = rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))"
_NUMBER = re.compile(_NUMBER_TEXT)
_NUMBERS = re.compile(rb"(?:" + _NUMBER_TEXT + rb")(?: (?:" + _NUMBER_TEXT + rb"))*")


def fail(path: str | os.PathLike[str], problem: str) -> errors.InputError:
    return errors.input_error(path, problem)


def printable(raw: bytes) -> str:
    """File bytes quoted in a message: outside printable ASCII (and backslash) as \\xNN, at most 80 chars + '...'."""
    out = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)
    return out[:80] + "..." if len(out) > 80 else out


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a point file (None when it is a regular file)."""
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return "point file not found"
        return f"cannot open the point file ({os.strerror(err.errno or 0)})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def read_regular_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file; FIFOs, devices, folders, link loops and missing files are refused."""
    problem = path_problem(path)
    if problem:
        raise fail(path, problem)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise fail(path, f"cannot open the point file ({os.strerror(err.errno or 0)})") from None


def is_number(token: bytes) -> bool:
    """A decimal number, inf, infinity or nan (no hex, no underscores), as both readers accept."""
    return _NUMBER.fullmatch(token) is not None


def all_numbers(tokens: list[bytes]) -> bool:
    """Every token is a number (one regex pass over the joined tokens)."""
    return not tokens or _NUMBERS.fullmatch(b" ".join(tokens)) is not None


class Lines:
    """Newline-separated lines of ``data`` from ``pos`` (one trailing '\\r' stripped), like the C++ cursor."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def next(self) -> bytes | None:
        if self.pos >= len(self.data):
            return None
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            end = len(self.data)
        line = self.data[self.pos:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        self.pos = min(end + 1, len(self.data))
        return line


def parse_count(token: bytes) -> int | None:
    """A non-negative count of at most 13 digits and at most 2^40, else None."""
    if not token or len(token) > 13 or not token.isdigit():
        return None
    value = int(token)
    return value if value <= MAX_COUNT else None


def finite_points(path: str | os.PathLike[str], xyz: np.ndarray, declared: int) -> np.ndarray:
    """f64/f32 (N,3) rows -> f32 rows whose three coordinates are finite after the cast (all-zero rows kept)."""
    if declared == 0:
        raise fail(path, "unreadable or empty point cloud (the header declares no points)")
    with np.errstate(over="ignore", invalid="ignore"):
        pts = np.asarray(xyz, dtype=np.float64).astype(np.float32).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.shape[0] == 0:
        raise fail(path, "point cloud has no finite point")
    return np.ascontiguousarray(pts)


def suffix_of(path: str | os.PathLike[str]) -> str:
    return Path(path).suffix.lower()


MAX_TIFF_CELLS = 1 << 24  # 4096 x 4096 cells (an MVTec scan is 800 x 800): more is a header lie or not a scan


TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # little/big-endian classic TIFF and BigTIFF


def tiff_magic_problem(path: str | os.PathLike[str]) -> str | None:
    """``unreadable tiff (not a TIFF file: bad magic)`` when the file does not start as a TIFF does, else None.
    Same rule and text as the C++ reader, checked before either side's TIFF library reads it."""
    with open(path, "rb") as f:
        head = f.read(4)
    return None if head in TIFF_MAGICS else "unreadable tiff (not a TIFF file: bad magic)"


def tiff_size_problem(path: str | os.PathLike[str]) -> str | None:
    """Why an xyz tiff's header size cannot be believed (before its pixels are allocated), or None.

    Same rule and text as the C++ reader: at most MAX_TIFF_CELLS cells, and an uncompressed image
    must fit in the file."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            h, w = int(page.imagelength), int(page.imagewidth)
            spp, bits, compression = int(page.samplesperpixel), int(page.bitspersample), int(page.compression)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the full read that follows
        return None
    if h * w > MAX_TIFF_CELLS:
        return f"xyz tiff of {h}x{w} cells is larger than the limit of {MAX_TIFF_CELLS} cells"
    need, have = h * w * spp * (bits // 8), os.path.getsize(path)
    if compression == 1 and need > have:
        return f"xyz tiff of {h}x{w} cells needs {need} data bytes, the file holds {have} (truncated?)"
    return None


_WHITESPACE = np.zeros(256, bool)
_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True  # what bytes.split() and C's isspace() split on


def ascii_table(body: bytes, rows: int, width: int) -> np.ndarray | None:
    """The first ``rows`` non-blank lines of ``body`` as (rows, width) f64 when every one of them holds
    exactly ``width`` numbers; None otherwise (the caller's row-by-row reader then names the fault).

    Vectorised: token starts are counted per line with numpy; Python's float() equals the readers'
    grammar on these tokens except for '_' separators, which send the body to the slow path."""
    if rows == 0 or b"_" in body:
        return None
    raw = np.frombuffer(body, np.uint8)
    space = _WHITESPACE[raw]
    starts = ~space
    starts[1:] &= space[:-1]
    newlines = np.flatnonzero(raw == 10)
    line_of_token = np.searchsorted(newlines, np.flatnonzero(starts))  # newlines before each token
    per_line = np.bincount(line_of_token, minlength=newlines.size + 1)
    filled = per_line[per_line > 0][:rows]
    if filled.size < rows or not (filled == width).all():
        return None
    tokens = body.split()[: rows * width]
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return np.array(values, dtype=np.float64).reshape(rows, width)
