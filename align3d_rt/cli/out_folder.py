"""Output folders of ``infer``/``eval``/``render``/``synth`` (and ``train``'s target check): checked before any
work, locked while written.

Rules (docs/usage.md "Output folders"):
- ``--out`` must be a folder or a new path whose nearest existing parent is a writable folder;
  anything else (an existing file, a path below a file, a read-only folder) is one line, exit 2.
- ``infer``/``eval`` lock their folder (an OS lock, ``flock``, on the folder itself: no lock file;
  released when the process ends, even when it is killed): a second run into the same folder is
  refused while the first runs.
- A folder that already holds files is refused unless ``--overwrite`` is given. ``--overwrite`` deletes
  only the files the same command wrote there earlier (infer: ``scores.json`` and the files it lists,
  also those of a sample being written when the run stopped; eval: ``manifest.json``, the ``results.*``
  tables, ``results_contact_sheet.png``, ``results_classes/`` and ``results_examples/``) and refuses,
  deleting nothing, when the folder holds anything else: files of unknown origin are never deleted.
- ``--out`` is never the bundle folder being read, nor a folder inside it.
- A folder this run created is removed again when the run fails before writing anything into it,
  and only under its lock: a run that created the folder but lost the lock to another leaves it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from types import TracebackType

from align3d_rt.errors import Align3DError
from align3d_rt.io_utils import foreign_entries, read_json, remove_owned

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


def check_resumable_out(path: Path, command: str, names: tuple[str, ...], markers: tuple[str, ...]) -> None:
    """Refuse (one line) an ``--out`` for a command that writes fixed names into it and resumes from an
    earlier run (demo, bench): a non-empty folder must hold one of ``markers`` and only ``names`` (a
    trailing ``*`` is a prefix), else the user's files could be overwritten or mixed with ours."""
    check_writable_target(path)
    if not path.is_dir():
        return
    entries = sorted(e.name for e in path.iterdir())
    if not entries:
        return
    foreign = [n for n in entries if not any(n == k or (k.endswith("*") and n.startswith(k[:-1])) for k in names)]
    if foreign or not any((path / m).exists() for m in markers):
        example = (foreign or entries)[0]
        raise Align3DError(f"{path}: not an align3d-rt {command} output ({markers[0]} missing or other entries, e.g. "
                           f"{example}); its {len(entries)} entries are never overwritten: choose a new or empty --out")


def _entries(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.is_dir() else []


_OVERWRITABLE = ("infer", "eval", "render")  # commands with --overwrite (synth has none)
_EVAL_TOP = ("manifest.json", "results.md", "results.csv", "results.json", "results_contact_sheet.png")
_EVAL_SUBFOLDERS = {"results_classes": (".json", ".examples.npz"), "results_examples": (".png",),
                    "results_calibrations": (".json",)}


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


_RENDER_MARK = "correspondences.npz"
_RENDER_FILE = re.compile(r"(?:(?:view|rgb|gt)_\d{2,}\.png|contact_sheet\.png|correspondences\.npz)")


def owned_files(path: Path, command: str) -> set[str]:
    """Files (relative to ``path``) that an earlier ``command`` run wrote in ``path``, by its own record."""
    path = Path(path)
    if command == "render":
        return {f.name for f in path.iterdir() if _RENDER_FILE.fullmatch(f.name)} if path.is_dir() else set()
    if command == "eval":
        owned = set(_EVAL_TOP)
        for sub, suffixes in _EVAL_SUBFOLDERS.items():
            folder = path / sub
            if folder.is_dir() and not folder.is_symlink():
                owned |= {f"{sub}/{f.name}" for f in folder.iterdir()
                          if f.name.endswith(suffixes) and f.is_file() and not f.is_symlink()}
        return owned
    try:
        data = read_json(path / "scores.json")
    except (OSError, UnicodeDecodeError, ValueError):
        return set()
    owned = {"scores.json"}
    if _plain_name(data.get("index")):
        owned.add(data["index"])  # infer --html: index.html
    entries = [*(data.get("samples") or {}).values(), *(data.get("pending") or {}).values()]
    for entry in entries:
        outputs = entry.get("outputs") if isinstance(entry, dict) else None
        if isinstance(outputs, dict):
            owned |= {name for name in outputs.values() if _plain_name(name)}
    return owned


def written_by(path: Path) -> str | None:
    """The align3d-rt command whose output ``path`` holds ('infer', 'eval', 'render') or None."""
    for command, (name, keys) in _SIGNATURES.items():
        try:
            data = read_json(Path(path) / name)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict) and all(k in data for k in keys):
            return command
    if (Path(path) / _RENDER_MARK).is_file() and not (Path(path) / _RENDER_MARK).is_symlink():
        return "render"
    return None


class OutputFolder:
    """``with OutputFolder(out, command, overwrite, resume):`` create, lock and (maybe) empty ``out``.

    ``resume`` accepts a non-empty folder this command wrote (``eval --resume``) and keeps its files.
    """

    def __init__(self, path: Path, command: str, overwrite: bool = False, resume: bool = False,
                 inputs: tuple[Path | None, ...] = ()) -> None:
        self.path = Path(path)
        self.inputs = tuple(Path(p) for p in inputs if p is not None)  # bundles --out must not be or lie in
        self.command = command
        self.overwrite = overwrite
        self.resume = resume
        self._fd: int | None = None
        self._created = False

    def check(self) -> None:
        """Every refusal that needs no lock (call before any expensive work)."""
        check_writable_target(self.path)
        from align3d_rt.artifacts.bundle import is_bundle_dir

        for folder in self.inputs:
            if is_bundle_dir(folder) and (self.path.resolve() == folder.resolve()
                                          or folder.resolve() in self.path.resolve().parents):
                raise Align3DError(f"{self.path}: is the bundle's folder {folder} or lies inside it; choose an --out "
                                   f"outside the bundle")
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
        if self.overwrite and not self.resume:
            foreign = foreign_entries(self.path, owned_files(self.path, self.command))
            if foreign:
                raise Align3DError(f"{self.path}: holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
                                   f"align3d-rt {self.command} did not write (e.g. {foreign[0]}); --overwrite "
                                   f"deletes only its own earlier output: move them, or choose a new or empty --out")
        if not (self.overwrite or self.resume):
            if self.command not in _OVERWRITABLE:
                raise Align3DError(f"{self.path}: output folder is not empty ({len(entries)} entries); its files are "
                                   f"never overwritten: choose a new or empty --out")
            hint = "--overwrite to replace its contents" + (" or --resume to continue"
                                                             if self.command == "eval" else "")
            raise Align3DError(f"{self.path}: output folder is not empty ({len(entries)} entries); pass {hint}, "
                               f"or choose a new --out")

    def __enter__(self) -> OutputFolder:
        self.check()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.mkdir()
            self._created = True  # by this run (of two runs racing here, only one creates it)
        except FileExistsError:
            self._created = False
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
                remove_owned(self.path, owned_files(self.path, self.command))
        except BaseException:
            self._remove_if_created_and_empty()  # still under the lock
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
        if exc_type is not None:
            self._remove_if_created_and_empty()  # still under the lock
        self._unlock()

    def _remove_if_created_and_empty(self) -> None:
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty: nothing of a failed start is left
