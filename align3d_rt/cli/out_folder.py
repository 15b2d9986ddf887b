"""Output folders of ``infer``/``eval``/``train``: checked before any work, locked while written.

Rules (docs/usage.md "Output folders"):
- ``--out`` must be a folder or a new path whose nearest existing parent is a writable folder;
  anything else (an existing file, a path below a file, a read-only folder) is one line, exit 2.
- ``infer``/``eval`` lock their folder (an OS lock, ``flock``, on the folder itself: no lock file;
  released when the process ends, even when it is killed): a second run into the same folder is
  refused while the first runs.
- A folder that already holds files is refused unless ``--overwrite`` is given; ``--overwrite``
  empties it first, and only when the same command wrote it (infer: its ``scores.json``; eval: its
  ``manifest.json``, written when the evaluation starts): files of unknown origin are never deleted.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from types import TracebackType

from align3d_rt.errors import Align3DError

# command -> (file, keys it must hold) that marks a folder as that command's output
_SIGNATURES = {"infer": ("scores.json", ("detector", "samples", "failed")),
               "eval": ("manifest.json", ("protocol", "detector"))}


def check_writable_target(path: Path, what: str = "output folder") -> None:
    """Refuse (one line) an ``--out`` that cannot become a writable folder; creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise Align3DError(f"{path}: exists and is not a folder; choose another {what}")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise Align3DError(f"{path}: cannot create the {what} ({probe} is a file, not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise Align3DError(f"{path}: cannot write the {what} ({probe} is not writable)")


def _entries(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.is_dir() else []


def written_by(path: Path) -> str | None:
    """The align3d-rt command whose output ``path`` holds ('infer', 'eval') or None."""
    for command, (name, keys) in _SIGNATURES.items():
        try:
            data = json.loads((Path(path) / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict) and all(k in data for k in keys):
            return command
    return None


class OutputFolder:
    """``with OutputFolder(out, command, overwrite, resume):`` create, lock and (maybe) empty ``out``.

    ``resume`` accepts a non-empty folder this command wrote (``eval --resume``) and keeps its files.
    """

    def __init__(self, path: Path, command: str, overwrite: bool = False, resume: bool = False) -> None:
        self.path = Path(path)
        self.command = command
        self.overwrite = overwrite
        self.resume = resume
        self._fd: int | None = None

    def check(self) -> None:
        """Every refusal that needs no lock (call before any expensive work)."""
        check_writable_target(self.path)
        entries = _entries(self.path)
        if not entries:
            return
        owner = written_by(self.path)
        if owner is None and (self.overwrite or self.resume):
            raise Align3DError(f"{self.path}: not an align3d-rt {self.command} output folder; its "
                               f"{len(entries)} entries are never deleted or mixed with ours: choose a new or "
                               f"empty --out")
        if owner is not None and owner != self.command and (self.overwrite or self.resume):
            raise Align3DError(f"{self.path}: holds `align3d-rt {owner}` output, not `{self.command}`; "
                               f"choose another --out")
        if not (self.overwrite or self.resume):
            hint = "--overwrite to replace its contents" + (" or --resume to continue" if self.command == "eval" else "")
            raise Align3DError(f"{self.path}: output folder is not empty ({len(entries)} entries); pass {hint}, "
                               f"or choose a new --out")

    def __enter__(self) -> "OutputFolder":
        self.check()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Align3DError(f"{self.path}: another align3d-rt run is writing this output folder (it is "
                               f"locked); wait for it or choose another --out") from None
        self._fd = fd
        try:
            self.check()  # again under the lock: another run may have written here meanwhile
            if self.overwrite and not self.resume:
                for entry in _entries(self.path):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
        except BaseException:
            self._unlock()
            raise
        return self

    def _unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._unlock()
