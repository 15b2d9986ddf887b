"""Atomic file writing and hashing: nothing half-written is ever left at a final path."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

# The largest JSON file the tool reads (manifests, run configs, calibrations, scores.json: all far smaller).
JSON_MAX_BYTES = 64 << 20


class JSONFileError(ValueError):
    """A JSON file that is too large or too deeply nested to read (a ValueError, like json.JSONDecodeError)."""


def read_json(path: str | os.PathLike[str], max_bytes: int = JSON_MAX_BYTES) -> Any:
    """``json.loads`` of a UTF-8 file, refusing files over ``max_bytes`` and nesting too deep for Python's
    parser. Raises OSError, or ValueError (UnicodeDecodeError, json.JSONDecodeError, JSONFileError)."""
    import stat

    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
        raise JSONFileError("not a regular file")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise JSONFileError(f"larger than {max_bytes >> 20} MiB; not a file this tool wrote")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise JSONFileError("JSON nested too deeply; not a file this tool wrote") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    The temporary name keeps the final suffix so writers that dispatch on the extension still work.
    ``replace=False``: the rename never replaces a file that appeared at ``path`` (FileExistsError).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=final.suffix or ".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes it private (0600); the result is an ordinary file
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        if replace:
            os.replace(tmp_path, final)
        else:
            rename_noreplace(tmp_path, final)
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if err.errno is None or (err.filename is not None and Path(err.filename) != tmp_path):
            raise
        raise OSError(err.errno, err.strerror, str(final)) from err  # name the file being written, not its temporary
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, replace: bool = True) -> None:
    with atomic_path(path, replace=replace) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str, replace: bool = True) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), replace=replace)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars and arrays as numbers and lists, paths as text."""
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _standard_json(obj: Any) -> Any:
    """``obj`` with NaN/±inf floats as None: the files are standard JSON (an undefined metric reads null)."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _standard_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_standard_json(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return _standard_json(obj.tolist())
    return obj


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomic, sorted, standard JSON (allow_nan=False: non-finite floats are written as null)."""
    text = json.dumps(_standard_json(obj), indent=2, sort_keys=True, default=json_default, allow_nan=False)
    write_text_atomic(path, text + "\n")


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def save_npz_atomic(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        # numpy's stub also matches **arrays against its allow_pickle keyword
        np.savez_compressed(tmp, **cast(dict[str, Any], arrays))


def save_png_atomic(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 HxW or HxWx3 array as PNG."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-able settings dict (used for cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=json_default).encode()).hexdigest()


def is_temp_of(name: str, final_name: str) -> bool:
    """True when ``name`` is a leftover temporary of :func:`atomic_path` for a file called ``final_name``."""
    final = Path(final_name)
    return (name.startswith(f".{final.stem}.") and name.endswith(final.suffix or ".tmp")
            and len(name) > len(final.stem) + 1 + len(final.suffix or ".tmp"))


def _is_owned(rel: str, owned: frozenset[str]) -> bool:
    if rel in owned:
        return True
    parent, _, name = rel.rpartition("/")
    return any(is_temp_of(name, o.rpartition("/")[2]) for o in owned if o.rpartition("/")[0] == parent)


def _owned_dirs(owned: frozenset[str]) -> frozenset[str]:
    return frozenset("/".join(o.split("/")[:i]) for o in owned for i in range(1, o.count("/") + 1))


def foreign_entries(root: str | os.PathLike[str], owned: set[str] | frozenset[str]) -> list[str]:
    """Entries below ``root`` (relative, '/'-separated, sorted) that are not ``owned`` files, leftover
    temporaries of them, or folders on the way to them (links are never owned)."""
    root_path, owned_set, foreign = Path(root), frozenset(owned), []
    dirs = _owned_dirs(owned_set)
    for dirpath, dirnames, filenames in os.walk(root_path):
        base = Path(dirpath).relative_to(root_path).as_posix()
        prefix = "" if base == "." else base + "/"
        for name in list(dirnames):
            if (Path(dirpath) / name).is_symlink() or prefix + name not in dirs:
                dirnames.remove(name)  # not descended: the whole folder is someone else's
                foreign.append(prefix + name)
        foreign += [prefix + n for n in filenames
                    if (Path(dirpath) / n).is_symlink() or not _is_owned(prefix + n, owned_set)]
    return sorted(foreign)


def remove_owned(root: str | os.PathLike[str], owned: set[str] | frozenset[str]) -> None:
    """Delete the ``owned`` files below ``root`` (and leftover temporaries of them), then the folders left
    empty by that; ``root`` itself and everything else stay."""
    root_path, owned_set = Path(root), frozenset(owned)
    dirs = _owned_dirs(owned_set)
    for dirpath, _dirnames, filenames in os.walk(root_path, topdown=False):
        base = Path(dirpath).relative_to(root_path).as_posix()
        prefix = "" if base == "." else base + "/"
        for name in filenames:
            if _is_owned(prefix + name, owned_set) and not (Path(dirpath) / name).is_symlink():
                (Path(dirpath) / name).unlink()
        if base in dirs and not Path(dirpath).is_symlink():
            with contextlib.suppress(OSError):
                Path(dirpath).rmdir()  # only when empty


_RENAME_NOREPLACE = 1  # linux/fs.h


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` to ``dst`` only if nothing is at ``dst`` (FileExistsError otherwise), atomically where the
    kernel has renameat2 (Linux); elsewhere checked just before the rename."""
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd = -100
        rc = renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: the file system cannot do NOREPLACE
            raise OSError(err, os.strerror(err), os.fspath(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.rename(src, dst)


FolderState = tuple[int, tuple[int, int] | None] | None


def replaceable_folder(path: str | os.PathLike[str], ours: Callable[[Path], bool]) -> bool:
    """A path a staged folder may be swapped onto: absent, an empty folder, or a folder ``ours`` accepts."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return True
    return path.is_dir() and not path.is_symlink() and (not any(path.iterdir()) or ours(path))


def folder_state(path: Path, marker: str) -> FolderState:
    """None when ``path`` is absent, else (its inode, (inode, mtime) of its ``marker`` file or None)."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return None
    try:
        m = (path / marker).stat()
        return inode, (m.st_ino, m.st_mtime_ns)
    except FileNotFoundError:
        return inode, None


@contextlib.contextmanager
def staged_folder(final: str | os.PathLike[str], *, marker: str, ours: Callable[[Path], bool], what: str,
                  error: Callable[[str], Exception]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final`` in one rename.

    ``final`` may be absent, an empty folder or a folder ``ours`` accepts (one this tool wrote, holding only
    its own files; ``marker`` is the file that says so); anything else is refused (never deleted) with
    ``error("FINAL: problem")``. The swap refuses too, nothing replaced, when ``final`` changed meanwhile (e.g.
    another run into the same new path finished first): a path that was free is taken with a rename that
    never replaces, and ``final`` is replaced only while it is still the folder found at the start (moved
    aside, deleted after the swap, put back if the swap fails). On any error the temporary folder goes.
    """
    final_path = Path(final)
    meanwhile = f"{final_path}: was written by another run meanwhile; not replaced (run again, with --overwrite " \
                f"to replace it)"
    if not replaceable_folder(final_path, ours):
        raise error(f"{final_path}: exists and is not an empty folder or {what}; not replaced")
    start = folder_state(final_path, marker)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_path.name}.", suffix=".partial", dir=final_path.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
        if folder_state(final_path, marker) != start or not replaceable_folder(final_path, ours):
            raise error(meanwhile)
        old: Path | None = None
        if start is not None and start[1] is not None:  # ours: moved aside, deleted after the swap
            old = Path(tempfile.mkdtemp(prefix=f".{final_path.name}.", suffix=".old", dir=final_path.parent))
            os.replace(final_path, old / "previous")
        elif start is not None:  # an empty folder (another run may have removed it first)
            with contextlib.suppress(FileNotFoundError):
                final_path.rmdir()
        try:
            rename_noreplace(tmp, final_path)
        except FileExistsError:
            raise error(meanwhile) from None
        except BaseException:
            if old is not None:
                os.replace(old / "previous", final_path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
