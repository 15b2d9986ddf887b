"""align3d-inspect option names match align3d-rt's (--device-name; --device a deprecated alias) and the
encoders find the spec §3 tensor names in the model, refusing a graph without them in one line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpp_build

pytest.importorskip("openvino")
if cpp_build.missing_tools():
    pytest.skip(f"C++ toolchain missing ({', '.join(cpp_build.missing_tools())}); run scripts/setup.sh",
                allow_module_level=True)

FIXTURE = cpp_build.ROOT / "cpp" / "tests" / "data" / "bundle"  # verifies; its encoder files are placeholders


@pytest.fixture(scope="module")
def inspect() -> Path:
    return cpp_build.build("cpp") / "cpp" / "align3d-inspect"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("names") / "part.npy"
    np.save(p, np.random.default_rng(0).uniform(-0.05, 0.05, size=(500, 3)).astype(np.float32))
    return p


def _run(inspect: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(inspect), *args], capture_output=True, text=True, timeout=120)


def test_device_name_is_the_option_and_device_a_deprecated_alias(inspect: Path, cloud: Path, tmp_path: Path) -> None:
    new = _run(inspect, str(FIXTURE), str(cloud), "--out", str(tmp_path / "a"), "--device-name", "NOSUCHDEV")
    assert new.returncode == 2 and len(new.stderr.strip().splitlines()) == 1, new.stderr
    assert "device NOSUCHDEV is not available here" in new.stderr
    old = _run(inspect, str(FIXTURE), str(cloud), "--out", str(tmp_path / "b"), "--device", "NOSUCHDEV")
    lines = old.stderr.strip().splitlines()
    assert old.returncode == 2 and len(lines) == 2, old.stderr
    assert "--device is deprecated, use --device-name" in lines[0]
    assert lines[1] == new.stderr.strip()  # the alias sets the same option
    assert "--device-name" in _run(inspect, "--help").stdout
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_graph_without_spec_tensor_names_is_refused(inspect: Path, cloud: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from align3d_rt.artifacts.bundle import hash_files, write_manifest

    bundle = tmp_path / "renamed"
    shutil.copytree(FIXTURE, bundle)
    for name in ("encoder.xml", "encoder.bin"):
        (bundle / name).unlink()
    graph = helper.make_graph([helper.make_node("Cast", ["pixels"], ["maps"], to=TensorProto.FLOAT)], "renamed",
                              [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["B", 336, 336, 3])],
                              [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["B", 336, 336, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), bundle / "encoder.onnx")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.pop("openvino")
    manifest["files"] = hash_files(bundle, ["encoder.onnx"])
    write_manifest(bundle, manifest)
    proc = _run(inspect, str(bundle), str(cloud), "--out", str(tmp_path / "out"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == (f"{bundle / 'encoder.onnx'}: the encoder graph has no input 'views' (it has: pixels); "
                        "re-export the bundle with align3d-rt export")
    assert not (tmp_path / "out").exists()
