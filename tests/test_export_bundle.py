"""Bundle format: manifest contents, hash verification, atomic writes, ONNX validity, dynamic batch."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_support import session_tiny

from align3d_rt.artifacts.bundle import FORMAT_VERSION, MANIFEST_NAME, ONNX_NAME, load_bundle, staged_directory
from align3d_rt.errors import BundleError
from align3d_rt.io_utils import sha256_file


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return session_tiny(tmp_path_factory.getbasetemp() / "export_tiny")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_manifest_records_run_and_hashes(tiny: dict[str, Path]) -> None:
    b = load_bundle(tiny["fp32"])
    m = b.manifest
    assert m["format_version"] == FORMAT_VERSION and b.precision == "fp32" and m["opset"] == 17
    assert m["files"][ONNX_NAME] == sha256_file(b.onnx_path)
    assert b.image_size == 336 and b.grid_size == 24 and m["num_views"] == 9
    assert m["clip"]["name"] == "align3d-tiny" and m["clip"]["weights_id"] == "random:0"
    assert b.fusion_weight == 0.5 and b.render_settings.preset == "paper9"
    assert m["render_settings"]["views"] == [list(v) for v in b.render_settings.views]
    assert set(m["versions"]) >= {"align3d_rt", "onnx", "onnxruntime", "torch"} and m["versions"]["torch"]
    assert m["run"]["config"]["clip"]["init_seed"] == 0
    check = m["onnx"]["export_check"]
    assert check["batches"] == [1, 3] and max(check["max_abs_diff_vs_torch"].values()) <= 1e-4
    assert load_bundle(tiny["fp16"]).manifest["onnx"]["fp32_ops"][:2] == ["LayerNormalization", "Softmax"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnx_checker_and_dynamic_batch(tiny: dict[str, Path], precision: str) -> None:
    import onnx

    from align3d_rt.runtime.onnxruntime_backend import OrtBackend

    b = load_bundle(tiny[precision])
    onnx.checker.check_model(str(b.onnx_path), full_check=True)
    model = onnx.load(str(b.onnx_path), load_external_data=False)
    inp = model.graph.input[0]
    assert inp.name == "views" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT] * 2
    views = np.random.default_rng(3).integers(0, 256, (3, 336, 336, 3), dtype=np.uint8)
    with OrtBackend(b) as ort_b:
        one, three = ort_b.infer(views[:1]), ort_b.infer(views)
    assert one.patch_maps.shape == (1, 2, 24, 24) and three.patch_maps.shape == (3, 2, 24, 24)
    assert three.global_probs.shape == (3, 2) and three.patch_maps.dtype == np.float32
    # int8 activations are quantized with one scale per run (dynamic), so batch mates shift results a little
    tol = {"fp32": 1e-5, "fp16": 2e-3, "int8": 0.05}[precision]
    np.testing.assert_allclose(one.patch_maps[0], three.patch_maps[0], atol=tol)


def test_fp16_graph_is_half_with_fp32_layernorm(tiny: dict[str, Path]) -> None:
    import onnx

    model = onnx.load(str(load_bundle(tiny["fp16"]).onnx_path))
    types = {i.name: i.data_type for i in model.graph.initializer}
    big = [n for n in model.graph.initializer if np.prod(n.dims) >= 128 * 128]
    assert big and all(n.data_type == onnx.TensorProto.FLOAT16 for n in big)
    produced = {o: n for n in model.graph.node for o in n.output}
    ln = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert ln
    for node in ln:  # input comes through a Cast to fp32, scale/bias stay fp32
        src = produced.get(node.input[0])
        assert src is not None and src.op_type == "Cast" and src.attribute[0].i == onnx.TensorProto.FLOAT
        assert types.get(node.input[1], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT


def test_tampered_file_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    b = _copy(tiny["int8"], tmp_path / "b")
    data = bytearray((b / ONNX_NAME).read_bytes())
    data[len(data) // 2] ^= 0x01
    (b / ONNX_NAME).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 differs") as err:
        load_bundle(b)
    assert "\n" not in str(err.value) and ONNX_NAME in str(err.value)


def test_missing_file_and_manifest_are_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    b = _copy(tiny["int8"], tmp_path / "b")
    (b / ONNX_NAME).unlink()
    with pytest.raises(BundleError, match="missing from the bundle"):
        load_bundle(b)
    (b / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match="manifest.json missing"):
        load_bundle(b)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")


def test_wrong_format_version_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    b = _copy(tiny["int8"], tmp_path / "b")
    m = json.loads((b / MANIFEST_NAME).read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (b / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="format version"):
        load_bundle(b)
    (b / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(b)


@pytest.mark.parametrize("key, value", [("precision", "fp32"), ("fusion_weight", 0.9)])
def test_hand_edited_manifest_is_refused(tiny: dict[str, Path], tmp_path: Path, key: str, value: object,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Editing a setting in manifest.json breaks its checksum: refused by the loader and by the CLI (one line,
    exit 2)."""
    from align3d_rt.cli import main

    b = _copy(tiny["int8"], tmp_path / "b")
    m = json.loads((b / MANIFEST_NAME).read_text())
    assert m["manifest_sha256"] and m[key] != value
    m[key] = value
    (b / MANIFEST_NAME).write_text(json.dumps(m, indent=2))
    with pytest.raises(BundleError, match="manifest checksum mismatch") as err:
        load_bundle(b)
    assert "\n" not in str(err.value)
    np.save(tmp_path / "c.npy", np.random.default_rng(0).random((500, 3)).astype(np.float32))
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", str(b), "--out", str(tmp_path / "o"), "--no-ply"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "manifest checksum mismatch" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("version", [1, 2])
def test_bundles_before_the_normalised_aligner_are_refused(tiny: dict[str, Path], tmp_path: Path, version: int,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Formats 1 and 2 hold an aligner fed unnormalised features: refused with the reason, on one line
    (loader and CLI, exit 2); they cannot be converted numerically."""
    from align3d_rt.artifacts.bundle import manifest_digest
    from align3d_rt.cli import main

    b = _copy(tiny["fp32"], tmp_path / "b")
    m = json.loads((b / MANIFEST_NAME).read_text())
    m["format_version"] = version
    m["manifest_sha256"] = manifest_digest(m)
    (b / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(BundleError, match=f"bundle format version {version} feeds the aligner unnormalised") as err:
        load_bundle(b)
    assert "\n" not in str(err.value) and "re-export the bundle" in str(err.value)
    np.save(tmp_path / "c.npy", np.random.default_rng(0).random((500, 3)).astype(np.float32))
    rc = main(["infer", str(tmp_path / "c.npy"), "--bundle", str(b), "--out", str(tmp_path / "o"), "--no-ply"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "cannot be converted numerically" in lines[0]


@pytest.mark.parametrize("change, problem", [
    ({"fusion_weight": 1.5}, "outside \\[0, 1\\]"),
    ({"render_settings": "image_size"}, "differs from the graph's input size"),
    ({"render_settings": "preset"}, "bad render settings"),
    ({"files": "../escape.onnx"}, "leaves the bundle directory"),
])
def test_unusable_settings_are_refused_at_load(tiny: dict[str, Path], tmp_path: Path, change: dict,
                                               problem: str) -> None:
    """Settings that would fail in the middle of scoring are refused when the bundle is loaded (one line)."""
    from align3d_rt.artifacts.bundle import write_manifest

    b = _copy(tiny["fp32"], tmp_path / "b")
    m = json.loads((b / MANIFEST_NAME).read_text())
    key, value = next(iter(change.items()))
    if key == "render_settings":
        m[key][value] = 112 if value == "image_size" else "nine-views"
    elif key == "files":
        m[key][value] = "0" * 64
    else:
        m[key] = value
    write_manifest(b, m)  # properly re-signed: the checksum is not what refuses it
    with pytest.raises(BundleError, match=problem) as err:
        load_bundle(b)
    assert "\n" not in str(err.value)


def test_bundle_files_are_readable_by_others(tiny: dict[str, Path]) -> None:
    """Atomic writes must not leave mkstemp's private 0600 mode on a bundle others deploy and read."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for f in (tiny["fp32"] / MANIFEST_NAME, tiny["fp32"] / ONNX_NAME):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f


def test_staged_directory_never_leaves_half_bundle(tmp_path: Path) -> None:
    final = tmp_path / "bundle"
    with pytest.raises(RuntimeError):
        with staged_directory(final) as stage:
            (stage / "encoder.onnx").write_bytes(b"half")
            raise RuntimeError("export crashed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    final.mkdir()
    previous = json.dumps({"format": "align3d_rt.bundle", "note": "previous bundle"})
    (final / MANIFEST_NAME).write_text(previous)  # only a bundle may be replaced
    with pytest.raises(RuntimeError):
        with staged_directory(final) as stage:
            raise RuntimeError("crash while replacing")
    assert (final / MANIFEST_NAME).read_text() == previous
    with staged_directory(final) as stage:
        (stage / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_failed_export_leaves_nothing(tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from align3d_rt.export import onnx_export

    def boom(graph: object, path: Path, *a: object, **k: object) -> None:
        Path(path).write_bytes(b"half an onnx file")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(onnx_export, "export_onnx", boom)
    with pytest.raises(RuntimeError, match="conversion failed"):
        onnx_export.export_bundle(tiny["run"], tmp_path / "out", precision="int8")
    assert list(tmp_path.iterdir()) == []
