""".npy point files, read by the same rules and with the same messages as the C++ reader
(cpp/geometry/src/npy.cpp; docs/runtime-spec.md §4.1).

Format versions 1.0-3.0; dtypes little-endian float32, float64, int64, int32 and uint8 (bool is
parsed, then refused as not numeric), C or Fortran order. Everything else (float16, int16,
complex, big-endian, structured, object) is refused with the dtype named. The shape is checked
against the file size before anything is allocated.
"""
from __future__ import annotations

import os
from typing import Literal

import numpy as np

from align3d_rt.data.point_files import fail, printable

_MAGIC = b"\x93NUMPY"
_SIZE_MAX = (1 << 64) - 1
_TYPES = {"<f4": "float32", "<f8": "float64", "<i8": "int64", "<i4": "int32"}
_DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4", "uint8": "|u1", "bool": "|b1"}


class NpyProblem(Exception):
    """A problem of the file's bytes (text after 'unreadable .npy (')."""


class _Header:
    """The header's Python dict literal, parsed exactly as the C++ HeaderParser does."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def fail(self, what: str) -> NpyProblem:
        return NpyProblem("bad header: " + what)

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else "\0"

    def skip(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \n\t\r":
            self.i += 1

    def expect(self, c: str) -> None:
        if self.peek() != c:
            raise self.fail(f"expected '{c}'")
        self.i += 1

    def string(self) -> str:
        q = self.peek()
        if q not in ("'", '"'):
            raise self.fail("expected a quoted string")
        end = self.s.find(q, self.i + 1)
        if end < 0:
            raise self.fail("unterminated string")
        out = self.s[self.i + 1:end]
        self.i = end + 1
        return out

    def boolean(self) -> bool:
        for word, value in (("True", True), ("False", False)):
            if self.s[self.i:self.i + len(word)] == word:
                self.i += len(word)
                return value
        raise self.fail("fortran_order must be True or False")

    def shape(self) -> list[int]:
        self.expect("(")
        dims: list[int] = []
        while True:
            self.skip()
            if self.peek() == ")":
                self.i += 1
                break
            if not "0" <= self.peek() <= "9":
                raise self.fail("shape must be a tuple of non-negative integers")
            v = 0
            while "0" <= self.peek() <= "9":
                v = v * 10 + ord(self.peek()) - 48
                if v > _SIZE_MAX:
                    raise self.fail("shape dimension too large")
                self.i += 1
            while self.peek() == "L":
                self.i += 1
            dims.append(v)
            self.skip()
            if self.peek() == ",":
                self.i += 1
                continue
            self.skip()
            self.expect(")")
            break
        return dims

    def parse(self) -> tuple[str, bool, list[int]]:
        descr, fortran, shape = None, None, None
        self.skip()
        self.expect("{")
        while True:
            self.skip()
            if self.peek() == "}":
                self.i += 1
                break
            key = self.string()
            self.skip()
            self.expect(":")
            self.skip()
            if key == "descr":
                if self.peek() not in ("'", '"'):
                    raise self.fail("descr is not a simple dtype string (structured arrays are not supported)")
                descr = self.string()
            elif key == "fortran_order":
                fortran = self.boolean()
            elif key == "shape":
                shape = self.shape()
            else:
                raise self.fail(f"unexpected header key '{printable(key.encode('latin-1'))}'")
            self.skip()
            if self.peek() == ",":
                self.i += 1
                continue
            self.skip()
            self.expect("}")
            break
        self.skip()
        if self.i != len(self.s):
            raise self.fail("trailing text after the header dictionary")
        if descr is None or fortran is None or shape is None:
            raise self.fail("header lacks descr, fortran_order or shape")
        return descr, fortran, shape


def _type_name(descr: str) -> str:
    shown = printable(descr.encode("latin-1"))
    if len(descr) >= 2 and descr[0] == ">" and descr[1:] not in ("u1", "b1", "i1"):
        raise NpyProblem(f"big-endian dtype '{shown}' is not supported")
    if descr in _TYPES:
        return _TYPES[descr]
    if descr[:1] in ("|", "<", "=") and descr[1:] in ("u1", "b1"):  # C++: '>' is not stripped
        return "uint8" if descr[1:] == "u1" else "bool"
    raise NpyProblem(f"unsupported dtype '{shown}' (float32, float64, int64, int32, uint8 or bool, little-endian)")


def shape_text(shape: list[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def parse_npy(data: bytes) -> np.ndarray:
    """The array a .npy file's bytes hold (C order), or NpyProblem naming the fault."""
    if len(data) < 8 or data[:6] != _MAGIC:
        raise NpyProblem("not a .npy file (bad magic)")
    major = data[6]
    if major == 1:
        if len(data) < 10:
            raise NpyProblem("truncated .npy header")
        header_len, prefix = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3):
        if len(data) < 12:
            raise NpyProblem("truncated .npy header")
        header_len, prefix = int.from_bytes(data[8:12], "little"), 12
    else:
        raise NpyProblem(f"unsupported .npy format version {major}")
    if header_len > len(data) - prefix:
        raise NpyProblem("truncated .npy header")
    descr, fortran, shape = _Header(data[prefix:prefix + header_len].decode("latin-1")).parse()
    name = _type_name(descr)
    item = np.dtype(_DTYPES[name]).itemsize
    count = 1
    for d in shape:
        if d != 0 and count > _SIZE_MAX // d:
            raise NpyProblem(f"shape {shape_text(shape)} is too large")
        count *= d
    if count > _SIZE_MAX // item:
        raise NpyProblem(f"shape {shape_text(shape)} is too large")
    need, have = count * item, len(data) - prefix - header_len
    if have < need:
        raise NpyProblem(f"truncated .npy: shape {shape_text(shape)} needs {need} data bytes, the file holds {have}")
    flat = np.frombuffer(data, dtype=_DTYPES[name], count=count, offset=prefix + header_len)
    order: Literal["C", "F"] = "F" if fortran and len(shape) > 1 else "C"
    return flat.reshape(shape, order=order).copy(order="C")


def read_npy_points(path: str | os.PathLike[str], data: bytes) -> np.ndarray:
    """An (N,3) numeric .npy as f32 (numpy astype rounding), no validity filter."""
    try:
        arr = parse_npy(data)
    except NpyProblem as err:
        raise fail(path, f"unreadable .npy ({err})") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype == np.bool_:
        raise fail(path, f".npy must hold an (N,3) numeric array, got {arr.dtype} {shape_text(list(arr.shape))}")
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(np.float32)
