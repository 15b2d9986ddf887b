"""The architecture contract: import-linter layers, one backend registry, backends found by name."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from align3d_rt.runtime import registry

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package and its pyproject.toml, copied so a test can add a forbidden import."""
    root = tmp_path_factory.mktemp("contract")
    shutil.copytree(REPO / "align3d_rt", root / "align3d_rt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_import_contract_holds() -> None:
    res = _lint(REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "2 kept, 0 broken" in res.stdout


@pytest.mark.parametrize("module, forbidden", [
    ("runtime/detector.py", "align3d_rt.train.runner"),    # the runtime never imports train/
    ("runtime/detector.py", "align3d_rt.export.onnx_export"),  # ... nor export/
    ("kernels/backproject.py", "align3d_rt.runtime.registry"),  # kernels never import the runtime
    ("artifacts/bundle.py", "align3d_rt.model.graph"),     # formats sit below the model
    ("runtime/detector.py", "align3d_rt.serving.triton_client"),  # serving sits above the runtime
    ("serving/triton_pipeline.py", "align3d_rt.eval.report"),   # serving and eval stand apart
    ("train/runner.py", "align3d_rt.runtime.devices"),     # training stays apart from the runtime
    ("artifacts/engine_index.py", "align3d_rt.runtime.devices"),  # formats never probe the machine
])
def test_forbidden_import_breaks_the_contract(tree_copy: Path, module: str, forbidden: str) -> None:
    path = tree_copy / "align3d_rt" / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n\ndef _added() -> None:\n    import {forbidden}  # noqa: F401\n")
        res = _lint(tree_copy)
    finally:
        path.write_text(original)
    assert res.returncode != 0 and "BROKEN" in res.stdout.upper(), res.stdout[-2000:]
    assert forbidden in res.stdout


def test_a_registered_backend_appears_in_every_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adding a backend is one module + one register(...) line: every --backend takes it from the registry."""
    from align3d_rt.cli import build_parser

    spec = registry.BackendSpec(name="fakebackend", module="infer_eval_support", runner="FakeBackend", source="bundle",
                                devices=("cpu",), precisions=("fp32",), install_hint="nothing to install",
                                summary="a test backend")
    registry.register(spec)
    try:
        for command in ("infer", "eval", "parity", "calibrate"):
            with pytest.raises(SystemExit):
                build_parser().parse_args([command, "--help"])
            assert "fakebackend" in capsys.readouterr().out, command
        runner = registry.create_runner("fakebackend", object(), device="cpu")
        assert runner.name == "fake" and not runner.is_active
    finally:
        registry.unregister("fakebackend")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["infer", "--help"])
    assert "fakebackend" not in capsys.readouterr().out


# Where a backend's name may stand as a string: the registry and each backend's own module.
NAME_HOMES = {"runtime/registry.py", "runtime/torch_backend.py", "runtime/onnxruntime_backend.py",
              "runtime/tensorrt_backend.py", "runtime/openvino_backend.py"}
# Files that spell the same word as a Python module or distribution name, not as a backend choice.
MODULE_NAME_USES = {
    "runtime/devices.py": "import_backend('tensorrt'): the Python module",
    "runtime/arrays.py": "recognises torch tensors by their module",
    "versions.py": "distribution names whose versions are recorded",
    "artifacts/bundle.py": "the manifest's OpenVINO IR section is named after the file format",
    "export/openvino_worker.py": "the Python modules kept out of the NNCF child process",
    "eval/bench/memory.py": "reads the CUDA allocator's peaks only when the torch module is already imported",
    "serving/triton_config.py": "the encoder kinds of a Triton repository: Triton's own backends/platforms",
    "serving/triton_encoder.py": "import_backend('onnxruntime'): the Python module",
    "vocabulary.py": "the export format is named after the file format (OpenVINO IR), as the manifest section",
    "loaders.py": "import_backend('onnxruntime' / 'openvino'): the Python modules the loaders import",
}


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_backend_names_live_only_in_the_registry() -> None:
    """No CLI, pipeline or report keeps its own list of backends: names come from the registry."""
    names = set(registry.list_backends())
    assert {"torch", "onnxruntime", "tensorrt"} <= names
    offenders = {}
    for path in sorted((REPO / "align3d_rt").rglob("*.py")):
        rel = path.relative_to(REPO / "align3d_rt").as_posix()
        hits = _string_constants(path) & names
        if hits and rel not in NAME_HOMES and rel not in MODULE_NAME_USES:
            offenders[rel] = sorted(hits)
    assert not offenders, f"backend names outside the registry: {offenders}"
