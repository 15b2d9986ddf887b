"""Progress bars: tqdm when installed; a plain line printer on the torch-free line-side install."""
from __future__ import annotations

import sys
from typing import Any

try:  # tqdm is in the full install; the line-side inspector (numpy, numba, onnxruntime) may lack it
    from tqdm import tqdm as _tqdm
except ImportError:  # exercised by tests/test_inspector_install.py
    _tqdm = None


class _PlainBar:
    """The slice of tqdm's interface the CLI uses, printing one line per update."""

    def __init__(self, total: int | None = None, desc: str = "", file: Any = None, **_: Any) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self.file = file or sys.stderr

    def __enter__(self) -> _PlainBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n
        print(f"{self.desc}: {self.n}/{self.total}", file=self.file, flush=True)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        return None

    @staticmethod
    def write(msg: str, file: Any = None) -> None:
        print(msg, file=file or sys.stderr, flush=True)


def bar(**kwargs: Any) -> Any:
    """A progress bar context manager (tqdm's keyword arguments)."""
    return _tqdm(**kwargs) if _tqdm is not None else _PlainBar(**kwargs)


def write(msg: str, file: Any = None) -> None:
    """Print a line without breaking an active bar."""
    if _tqdm is not None:
        _tqdm.write(msg, file=file or sys.stderr)
    else:
        print(msg, file=file or sys.stderr, flush=True)
