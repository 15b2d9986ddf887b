"""load_bundle(defer_unread=True): the IR is hashed first, the other files while the IR compiles, and a
bundle is refused or accepted exactly as by the sequential check, with the same one line (spec 2.4)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from align3d_rt.artifacts.bundle import hash_files, load_bundle, write_manifest
from align3d_rt.errors import BundleError
from align3d_rt.render.views import RenderSettings

FILES = ("encoder.bin", "encoder.onnx", "encoder.xml")  # sorted: bin < onnx < xml


def _bundle(root: Path) -> Path:
    """A bundle with an OpenVINO section whose files are stand-in bytes (load_bundle never parses them)."""
    root.mkdir()
    for i, name in enumerate(FILES):
        (root / name).write_bytes(os.urandom(1 << 16) + bytes([i]))
    write_manifest(root, {
        "files": hash_files(root, list(FILES)), "onnx": {"file": "encoder.onnx"}, "precision": "fp32",
        "image_size": 336, "grid_size": 24, "fusion_weight": 0.5, "render_settings": RenderSettings().to_dict(),
        "clip": {"name": "align3d-tiny"}, "openvino": {"xml": "encoder.xml", "bin": "encoder.bin",
                                                         "precision": "fp32"}})
    return root


def _alter(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[0] ^= 0xFF
    path.write_bytes(bytes(blob))


def _sequential_error(root: Path) -> str:
    with pytest.raises(BundleError) as err:
        load_bundle(root)
    return str(err.value)


def test_a_good_bundle_hashes_the_onnx_graph_after_returning(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path / "b"), defer_unread=True)
    assert bundle.pending is not None
    bundle.pending.finish()
    bundle.pending.finish()  # idempotent
    assert load_bundle(tmp_path / "b").pending is None  # the default hashes everything before returning


def test_a_bad_file_the_encoder_reads_is_refused_before_load_bundle_returns(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b")
    _alter(root / "encoder.xml")
    want = _sequential_error(root)
    with pytest.raises(BundleError) as err:
        load_bundle(root, defer_unread=True)  # never returned: nothing compiles an unverified IR
    assert str(err.value) == want and want.startswith(f"{root / 'encoder.xml'}: sha256 differs")


@pytest.mark.parametrize("altered, removed, first", [
    ("encoder.onnx", None, "encoder.onnx"),          # only an unread file: found by finish()
    ("encoder.xml", "encoder.bin", "encoder.bin"),   # read files both bad: the first in sorted order
    ("encoder.xml", "encoder.onnx", "encoder.onnx"),  # an unread file sorts before a bad read one
])
def test_the_first_problem_in_sorted_order_is_the_sequential_checks(tmp_path: Path, altered: str,
                                                                     removed: str | None, first: str) -> None:
    root = _bundle(tmp_path / "b")
    _alter(root / altered)
    if removed:
        (root / removed).unlink()
    want = _sequential_error(root)
    assert want.startswith(f"{root / first}: ")
    with pytest.raises(BundleError) as err:
        bundle = load_bundle(root, defer_unread=True)
        assert bundle.pending is not None
        bundle.pending.finish()
    assert str(err.value) == want
    if altered == "encoder.onnx":
        with pytest.raises(BundleError, match="sha256 differs"):
            bundle.pending.finish()  # raised again, never forgotten


def test_a_later_manifest_problem_waits_for_the_files(tmp_path: Path) -> None:
    """A bad unread file is reported before a later problem (here: an unknown precision)."""
    import json

    root = _bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["precision"] = "fp8"
    write_manifest(root, manifest)
    with pytest.raises(BundleError, match="unknown precision"):
        load_bundle(root, defer_unread=True)
    _alter(root / "encoder.onnx")
    want = _sequential_error(root)
    with pytest.raises(BundleError) as err:
        load_bundle(root, defer_unread=True)
    assert str(err.value) == want and "encoder.onnx: sha256 differs" in want


def test_without_an_ir_everything_is_hashed_first(tmp_path: Path) -> None:
    import json

    root = _bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["openvino"]
    write_manifest(root, manifest)
    _alter(root / "encoder.onnx")
    with pytest.raises(BundleError, match="encoder.onnx: sha256 differs"):
        load_bundle(root, defer_unread=True)
