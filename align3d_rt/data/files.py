"""Finding point-cloud files: the files given, and every point file below the folders given."""
from __future__ import annotations

from pathlib import Path

from align3d_rt.errors import input_error

POINT_SUFFIXES = (".tiff", ".tif", ".pcd", ".ply", ".npy")


def collect_files(paths: list[Path], exclude: Path | None = None) -> list[tuple[Path, str]]:
    """(file, output key) for every given file and every point file below every given folder."""
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
    return _unique_keys(found)


def _is_below(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _unique_keys(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    seen: dict[str, int] = {}
    out = []
    for f, key in found:
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append((f, key if n == 0 else f"{key}_{n}"))
    return out
