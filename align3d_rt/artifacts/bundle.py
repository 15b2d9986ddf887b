"""The exported bundle: one encoder graph plus a manifest that travels with it (torch-free).

This module owns the bundle format: write (``write_manifest``, ``add_files``), read and validate
(``load_bundle``) and upgrade of older format versions (``UPGRADES``). docs/runtime-spec.md is its
written specification.

Layout of a bundle directory::

    manifest.json             format + version, settings, hashes of every file below, and the
                              sha256 of the manifest itself (``manifest_sha256``)
    encoder.onnx              EncoderGraph: views uint8 (B,S,S,3) -> patch_maps (B,2,G,G), global_probs (B,2)
    engines/<key>.engine      optional TensorRT engines (keyed by GPU, TensorRT version, shapes)
    engines/<key>.json        what each engine was built from
    trt_timing.cache          optional TensorRT timing cache
    encoder.xml, encoder.bin  optional OpenVINO IR of the same graph (``export --format openvino``),
                              described by the manifest's ``openvino`` section (precision, calibration)

``load_bundle`` checks the format version, the manifest's own checksum (so an edited precision or
fusion weight is refused) and the sha256 of every file the manifest lists, so an altered or
incomplete bundle is refused with one line instead of producing wrong scores.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align3d_rt.artifacts.migrate import ALIGNER_CHANGE, Upgrade, upgrade
from align3d_rt.errors import BundleError
from align3d_rt.io_utils import foreign_entries, read_json, sha256_file, staged_folder, write_json_atomic
from align3d_rt.render.views import RenderSettings
from align3d_rt.vocabulary import ONNX_PRECISIONS, ExportFormat, words

FORMAT_NAME = "align3d_rt.bundle"
FORMAT_VERSION = 3
DIGEST_KEY = "manifest_sha256"
MANIFEST_NAME = "manifest.json"
ONNX_NAME = "encoder.onnx"
ENGINES_DIR = "engines"
TIMING_CACHE_NAME = "trt_timing.cache"
IR_SECTION = "openvino"  # manifest section of the OpenVINO IR (also the export format's name)
IR_XML_NAME = "encoder.xml"
IR_BIN_NAME = "encoder.bin"
PRECISIONS = words(ONNX_PRECISIONS)
INPUT_NAME = "views"
OUTPUT_NAMES = ("patch_maps", "global_probs")
REQUIRED_KEYS = ("files", "onnx", "precision", "image_size", "grid_size", "fusion_weight", "render_settings", "clip")


# No upgrade steps: versions 1 and 2 hold an encoder graph whose aligner takes unnormalised
# features (see run_dir.ALIGNER_CHANGE); they are refused with the reason (OBSOLETE).
UPGRADES: dict[int, Upgrade] = {}
OBSOLETE: dict[int, str] = {1: ALIGNER_CHANGE, 2: ALIGNER_CHANGE}


@dataclass
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: dict[str, Any]
    onnx_path: Path
    precision: str
    render_settings: RenderSettings
    fusion_weight: float
    image_size: int
    pending: Any = None  # PendingFiles still hashing (load_bundle(defer_unread=True)); None when all verified

    @property
    def grid_size(self) -> int:
        return int(self.manifest["grid_size"])

    @property
    def clip_name(self) -> str:
        return str(self.manifest["clip"]["name"])

    @property
    def engines(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest.get("engines", {}))

    @property
    def ir(self) -> dict[str, Any] | None:
        """The manifest's OpenVINO section (xml/bin file names, precision, calibration) or None."""
        section = self.manifest.get(IR_SECTION)
        return dict(section) if isinstance(section, dict) else None

    @property
    def onnx_sha256(self) -> str | None:
        """Recorded sha256 of the encoder graph (identifies what engines were built from)."""
        return self.manifest["files"].get(self.onnx_path.relative_to(self.path).as_posix())


def canonical_digest(obj: dict[str, Any], digest_key: str) -> str:
    """sha256 of ``obj``'s canonical JSON (sorted keys, no spaces, ASCII; docs/runtime-spec.md 2.3)
    without its top-level ``digest_key``. Raises ValueError on NaN or infinite numbers."""
    body = {k: v for k, v in obj.items() if k != digest_key}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without ``manifest_sha256``."""
    return canonical_digest(manifest, DIGEST_KEY)


def _fail(path: Path | str, problem: str) -> BundleError:
    return BundleError(f"{path}: {problem}")


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise _fail(root, "bundle directory not found")
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise _fail(root, f"not a bundle ({MANIFEST_NAME} missing)")
    try:
        manifest = read_json(mpath)
    except (OSError, ValueError) as err:
        raise _fail(mpath, f"unreadable manifest ({type(err).__name__}: {err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _fail(mpath, f"not an {FORMAT_NAME} manifest")
    old_version = manifest.get("format_version")
    if old_version == FORMAT_VERSION:
        recorded = manifest.get(DIGEST_KEY)
        try:
            digest = manifest_digest(manifest)
        except ValueError:
            raise _fail(mpath, "manifest holds NaN or infinite numbers; re-export the bundle") from None
        if recorded != digest:
            raise _fail(mpath, "manifest checksum mismatch (manifest.json was edited or is corrupt); "
                               "re-export the bundle instead of editing it")
    manifest = upgrade(manifest, FORMAT_VERSION, UPGRADES, lambda problem: _fail(mpath, problem), "bundle",
                       "re-export the bundle with this version", obsolete=OBSOLETE)
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise _fail(mpath, f"manifest lacks {key!r}")
    return manifest


def bundle_formats(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The export formats a bundle holds, from its checked manifest (files not hashed): ``onnx`` always (every
    bundle holds the graph), ``openvino`` when it has an IR section."""
    manifest = _read_manifest(Path(path))
    has_ir = isinstance(manifest.get(IR_SECTION), dict)
    return (ExportFormat.ONNX, ExportFormat.OPENVINO) if has_ir else (ExportFormat.ONNX,)


def _leaves_root(rel: str) -> bool:
    return Path(rel).is_absolute() or ".." in Path(rel).parts


def _digests(root: Path, rels: list[str]) -> dict[str, str | OSError]:
    """sha256 of each listed regular file inside ``root`` (an OSError in place of a file that cannot be
    read), hashed on up to one thread per CPU: hashlib releases the GIL on large blocks, so a bundle's
    big files (ONNX graph, IR weights, engines) hash at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [rel for rel in rels if not _leaves_root(rel) and (root / rel).is_file()]

    def one(rel: str) -> tuple[str, str | OSError]:
        try:
            return rel, sha256_file(root / rel)
        except OSError as err:
            return rel, err

    if len(todo) < 2:
        return dict(one(rel) for rel in todo)
    with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
        return dict(pool.map(one, todo))


def listed_files(root: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """The manifest's ``files`` (relative path -> sha256); refused when there are none."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise _fail(root / MANIFEST_NAME, "manifest lists no files")
    return files


def check_digests(root: Path, files: dict[str, str], digests: dict[str, str | OSError]) -> None:
    """Raise the first problem in sorted order of ``files`` given the hashes found (``_digests`` of them all)."""
    for rel, digest in sorted(files.items()):
        if _leaves_root(rel):
            raise _fail(root / MANIFEST_NAME, f"file path {rel!r} leaves the bundle directory")
        fpath = root / rel
        if not fpath.is_file() or rel not in digests:
            raise _fail(fpath, "missing from the bundle; re-export it")
        found = digests[rel]
        if isinstance(found, OSError):
            raise found
        if found != digest:
            raise _fail(fpath, "sha256 differs from the manifest (file altered or corrupt); re-export the bundle")


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Check that every file the manifest lists exists and has the recorded sha256. The files are hashed
    in parallel; the checks and the one reported problem follow the sorted paths, as in C++."""
    files = listed_files(root, manifest)
    check_digests(root, files, _digests(root, sorted(files)))


def load_bundle(path: str | os.PathLike[str], verify: bool = True, defer_unread: bool = False) -> Bundle:
    """Read and (by default) hash-verify a bundle; raises BundleError with one line on any problem.

    ``defer_unread`` (a bundle with an OpenVINO IR): only the IR's files are hashed before this returns;
    the others hash in ``Bundle.pending`` while the caller compiles the IR, and the caller MUST call
    ``bundle.pending.finish()`` before it uses anything else of the bundle (spec 2.4)."""
    from align3d_rt.artifacts.deferred_hashing import PendingFiles, verify_first

    root = Path(path)
    manifest = _read_manifest(root)
    pending: PendingFiles | None = None
    if verify and defer_unread and isinstance(manifest.get(IR_SECTION), dict):
        ir = manifest[IR_SECTION]
        pending = verify_first(root, manifest, {str(ir.get("xml")), str(ir.get("bin"))})
    elif verify:
        verify_files(root, manifest)
    try:
        bundle = _checked_bundle(root, manifest)
    except BundleError:
        if pending is not None:
            pending.finish()  # a file problem is reported before any later one
        raise
    bundle.pending = pending
    return bundle


def _checked_bundle(root: Path, manifest: dict[str, Any]) -> Bundle:
    """The Bundle of a read manifest, after the checks that follow the files' (spec 2.6 order)."""
    onnx_rel = manifest["onnx"].get("file", ONNX_NAME)
    if onnx_rel not in manifest["files"]:
        raise _fail(root / MANIFEST_NAME, f"{onnx_rel} is not hash-listed in the manifest")
    ir = manifest.get(IR_SECTION)
    if ir is not None:
        names = [ir.get("xml"), ir.get("bin")] if isinstance(ir, dict) else [None]
        unlisted = [str(n) for n in names if n not in manifest["files"]]
        if unlisted:
            raise _fail(root / MANIFEST_NAME, f"OpenVINO IR {', '.join(unlisted)} is not hash-listed in the manifest")
    precision = manifest["precision"]
    if precision not in PRECISIONS:
        raise _fail(root / MANIFEST_NAME, f"unknown precision {precision!r}")
    try:
        settings = RenderSettings.from_dict(manifest["render_settings"])
        settings.views  # noqa: B018 - an unknown view preset raises here, not in the middle of scoring
    except (TypeError, ValueError) as err:
        raise _fail(root / MANIFEST_NAME, f"bad render settings ({err})") from None
    problem = _settings_problem(manifest, settings)
    if problem:
        raise _fail(root / MANIFEST_NAME, problem)
    return Bundle(
        path=root,
        manifest=manifest,
        onnx_path=root / onnx_rel,
        precision=precision,
        render_settings=settings,
        fusion_weight=float(manifest["fusion_weight"]),
        image_size=int(manifest["image_size"]),
    )


def _settings_problem(manifest: dict[str, Any], settings: RenderSettings) -> str | None:
    """What makes the recorded settings unusable (checked at load, so scoring never trips on them)."""
    from align3d_rt.render.api import RENDERERS

    try:
        weight, size = float(manifest["fusion_weight"]), int(manifest["image_size"])
    except (TypeError, ValueError):
        return "fusion_weight and image_size must be numbers"
    if not 0.0 <= weight <= 1.0:
        return f"fusion_weight {weight} is outside [0, 1]"
    if settings.renderer not in RENDERERS:
        return f"unknown renderer {settings.renderer!r} (known: {', '.join(RENDERERS)})"
    if settings.image_size != size:
        return f"render image size {settings.image_size} differs from the graph's input size {size}"
    grid = manifest["grid_size"]
    if isinstance(grid, bool) or not isinstance(grid, int) or not 1 <= grid <= size:
        return f"grid_size {grid!r} must be an integer in 1..image_size ({size})"
    return None


def hash_files(root: Path, rel_paths: list[str]) -> dict[str, str]:
    """sha256 of each listed file, keyed by its path relative to the bundle root (posix form)."""
    return {Path(rel).as_posix(): sha256_file(root / rel) for rel in rel_paths}


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Atomically (re)write manifest.json with this format version and its own checksum."""
    manifest = json.loads(json.dumps(dict(manifest, format=FORMAT_NAME, format_version=FORMAT_VERSION),
                                     default=str))  # plain JSON types, so the digest is what a reader recomputes
    manifest[DIGEST_KEY] = manifest_digest(manifest)
    write_json_atomic(root / MANIFEST_NAME, manifest)


def add_files(bundle: Bundle, rel_paths: list[str], section: str | None = None,
              entry_key: str | None = None, entry: dict[str, Any] | None = None) -> Bundle:
    """Hash new/updated files into the manifest (and optionally record ``manifest[section][entry_key]``).

    The files must already be in place; the manifest is rewritten atomically last, so a crash before
    that leaves the previous (still valid) manifest.
    """
    manifest = json.loads(json.dumps(bundle.manifest))
    manifest["files"].update(hash_files(bundle.path, rel_paths))
    if section is not None and entry_key is not None:
        manifest.setdefault(section, {})[entry_key] = entry or {}
    write_manifest(bundle.path, manifest)
    return load_bundle(bundle.path, verify=False)


def is_bundle_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding a manifest.json of this tool's bundle format."""
    try:
        manifest = read_json(Path(path) / MANIFEST_NAME)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME


def bundle_files(path: Path) -> set[str]:
    """The files a bundle's manifest says are its own (its ``files`` and manifest.json itself)."""
    try:
        files = read_json(Path(path) / MANIFEST_NAME).get("files")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return set()
    return {MANIFEST_NAME, *(f for f in files if isinstance(f, str))} if isinstance(files, dict) else {MANIFEST_NAME}


def foreign_in_bundle(path: Path) -> list[str]:
    """Entries of the bundle folder ``path`` its manifest does not list (the user's; never deleted)."""
    return foreign_entries(path, bundle_files(path))


def own_bundle(path: Path) -> bool:
    """A bundle folder holding only its own files (export may replace it)."""
    return is_bundle_dir(path) and not foreign_in_bundle(path)


def staged_directory(final: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Path]:
    """An empty temporary directory beside ``final`` that replaces ``final`` on success (``io_utils.staged_folder``).

    ``final`` may be absent, an empty folder or a bundle holding only its own files; anything else is
    refused (never deleted). The swap refuses (one line, nothing replaced) when ``final`` changed meanwhile.
    """
    return staged_folder(final, marker=MANIFEST_NAME, ours=own_bundle, what="a bundle", error=BundleError)
