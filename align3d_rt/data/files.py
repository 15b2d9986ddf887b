"""Finding point-cloud files: the files given, and every point file below the folders given."""
from __future__ import annotations

from pathlib import Path

from align3d_rt.errors import input_error

POINT_SUFFIXES = (".tiff", ".tif", ".pcd", ".ply", ".npy")


def collect_files(paths: list[Path], exclude: Path | None = None,
                  reserved: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """(file, output key) for every given file and every point file below every given folder; no key is one of
    ``reserved`` (keys whose outputs would collide with a file the command itself writes)."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*")
                if f.is_file() and f.suffix.lower() in POINT_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and not (exclude is not None and _is_below(f, exclude))
            )
            if not files:
                raise input_error(path, f"no point-cloud files ({', '.join(POINT_SUFFIXES)}) in this folder")
            base = path.name or "input"
            found += [(f, "__".join((base, *f.relative_to(path).with_suffix("").parts))) for f in files]
        elif path.is_file():
            found.append((path, path.stem))
        else:
            from align3d_rt.data.point_files import path_problem

            problem = path_problem(path) or "not a regular file"
            raise input_error(path, "no such file or folder" if problem == "point file not found" else problem)
    return _unique_keys(found, reserved)


def _is_below(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _unique_keys(found: list[tuple[Path, str]], reserved: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """Unique output keys (runtime-spec §9): a key already taken gets the first free ``_1``, ``_2``, ...,
    counting every key given so far, suffixed ones included (``a``, ``a``, ``a_1`` -> ``a``, ``a_1``, ``a_1_1``)."""
    keys = unique_keys([key for _, key in found], reserved)
    return [(f, key) for f, key in zip((f for f, _ in found), keys, strict=True)]


def unique_keys(keys: list[str], reserved: tuple[str, ...] = ()) -> list[str]:
    """Make ``keys`` unique in order: a repeat of a taken key becomes KEY_n with the smallest free n >= 1
    (``reserved`` keys count as taken from the start)."""
    taken: set[str] = set(reserved)
    out = []
    for key in keys:
        unique, n = key, 0
        while unique in taken:
            n += 1
            unique = f"{key}_{n}"
        taken.add(unique)
        out.append(unique)
    return out
