"""``export --format triton``: the repository's configs parse as Triton model configs, its Python models
score like local inference (driven in-process through a stand-in for Triton's pb_utils), and the
export refuses what it must not overwrite."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_support import session_samples, session_tiny
from triton_fakes import FakePbUtils, Request, Tensor

from align3d_rt.artifacts import triton_layout as layout
from align3d_rt.cli import main

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is in requirements.txt")
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return session_tiny(tmp_path_factory.mktemp("tiny"))


def _export(bundle: Path, out: Path, *extra: str) -> int:
    return main(["export", "--format", "triton", "--bundle", str(bundle), "--out", str(out), *extra])


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("encoder, field, value, files", [
    ("auto", "platform", "onnxruntime_onnx", ["model.onnx"]),
    ("python", "backend", "python", ["model.onnx", "model.py"]),
])
def test_every_config_parses_with_the_expected_fields(tiny: dict[str, Path], tmp_path: Path, encoder: str,
                                                      field: str, value: str, files: list[str]) -> None:
    repo = tmp_path / "repo"
    assert _export(tiny["fp32"], repo, "--triton-encoder", encoder, "--max-batch", "27", "--opt-batch", "9",
                   "--triton-instances", "2") == 0
    configs = sorted(repo.glob("*/config.pbtxt"))
    assert [c.parent.name for c in configs] == ["align3d", "align3d_encoder"]
    enc = _config(repo / "align3d_encoder" / "config.pbtxt")
    assert getattr(enc, field) == value and enc.name == "align3d_encoder"
    assert enc.max_batch_size == 27
    assert list(enc.dynamic_batching.preferred_batch_size) == [9, 27]
    assert enc.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.count, g.kind) for g in enc.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    (views,) = enc.input
    assert (views.name, views.data_type, list(views.dims)) == ("views", model_config_pb2.TYPE_UINT8, [336, 336, 3])
    outs = {o.name: (o.data_type, list(o.dims)) for o in enc.output}
    assert outs == {"patch_maps": (model_config_pb2.TYPE_FP32, [2, 24, 24]),
                    "global_probs": (model_config_pb2.TYPE_FP32, [2])}
    assert sorted(p.name for p in (repo / "align3d_encoder" / "1").iterdir()) == files
    onnx_sha = enc.parameters["onnx_sha256"].string_value
    manifest = json.loads((tiny["fp32"] / "manifest.json").read_text())
    assert onnx_sha == manifest["files"]["encoder.onnx"]

    pipe = _config(repo / "align3d" / "config.pbtxt")
    assert pipe.backend == "python" and pipe.max_batch_size == 0
    assert [(g.count, g.kind) for g in pipe.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    ins = {i.name: (list(i.dims), i.optional) for i in pipe.input}
    assert ins == {"points": ([-1, 3], False), "dataset": ([1], True), "category": ([1], True)}
    assert {o.name for o in pipe.output} == {"point_scores", "object_score", "global_probs", "view_maps", "views"}
    params = {k: v.string_value for k, v in pipe.parameters.items()}
    assert params["encoder_model"] == "align3d_encoder" and params["encoder_max_batch"] == "27"
    assert float(params["fusion_weight"]) == manifest["fusion_weight"]
    # the bundle copy is the bundle, file for file
    copy = repo / "align3d" / "1" / "bundle"
    assert json.loads((copy / "manifest.json").read_text()) == manifest
    readme = (repo / "README.md").read_text()
    assert "tritonserver --model-repository" in readme and "align3d-rt infer --triton" in readme
    assert json.loads((repo / layout.MARKER_NAME).read_text())["encoder_kind"] == ("onnx" if encoder == "auto"
                                                                                   else "python")


def _load(repo: Path, name: str, cls: type, pb: FakePbUtils) -> object:
    config = json_format.MessageToDict(_config(repo / name / "config.pbtxt"), preserving_proto_field_name=True)
    args = {"model_config": json.dumps(config), "model_repository": str(repo / name), "model_version": "1"}
    model = cls(args, pb)
    pb.models[name] = model
    return model


@pytest.fixture(scope="module")
def in_process(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FakePbUtils, object]:
    from align3d_rt.serving.triton_encoder import EncoderModel
    from align3d_rt.serving.triton_pipeline import PipelineModel

    repo = tmp_path_factory.mktemp("inproc") / "repo"
    assert _export(tiny["fp32"], repo, "--triton-encoder", "python") == 0
    pb = FakePbUtils()
    _load(repo, "align3d_encoder", EncoderModel, pb)
    pipeline = _load(repo, "align3d", PipelineModel, pb)
    return repo, pb, pipeline


def _request(points: np.ndarray, dataset: str = "", category: str = "", outputs: tuple[str, ...] = ()) -> Request:
    tensors = [Tensor("points", points)]
    tensors += [Tensor(n, np.array([v.encode()], dtype=object)) for n, v in (("dataset", dataset),
                                                                           ("category", category)) if v]
    return Request(tensors, list(outputs))


def test_pipeline_model_scores_like_local_inference(in_process: tuple, tiny: dict[str, Path],
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """One scoring path: the pipeline model's answer equals the local Detector's to 1e-5."""
    from align3d_rt.runtime.detector import Detector

    _, pb, pipeline = in_process
    samples = session_samples(tmp_path_factory.mktemp("samples"), n=3)
    requests = [_request(s.points, s.dataset, s.category, ("view_maps", "views")) for s in samples]
    calls_before = len(pb.bls_batches)  # other tests share the module's models
    responses = pipeline.execute(requests)
    with Detector.from_bundle(tiny["fp32"], backend="onnxruntime", device="cpu") as local:
        expected = local.score(samples, keep_render=True)
    assert len(samples) == 3 and pb.bls_batches[calls_before:] == [9, 9, 9]  # one BLS call per cloud, all 9 views
    for resp, exp in zip(responses, expected, strict=True):
        assert not resp.has_error()
        out = {t.name(): t.as_numpy() for t in resp.output_tensors}
        np.testing.assert_allclose(out["point_scores"], exp.point_scores, atol=1e-5, rtol=0)
        assert abs(float(out["object_score"][0]) - exp.object_score) <= 1e-5
        np.testing.assert_allclose(out["global_probs"], exp.global_probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(out["view_maps"], exp.view_maps, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(out["views"], exp.render.images)


def test_pipeline_model_returns_view_outputs_only_when_asked(in_process: tuple) -> None:
    _, _, pipeline = in_process
    pts = np.random.default_rng(1).standard_normal((300, 3)).astype(np.float32)
    (resp,) = pipeline.execute([_request(pts)])
    assert {t.name() for t in resp.output_tensors} == {"point_scores", "object_score", "global_probs"}


@pytest.mark.parametrize("points, problem", [
    (np.zeros((0, 3), np.float32), "N >= 1"),
    (np.zeros((5, 2), np.float32), "(N,3)"),
    (np.array([[0, 0, np.nan], [1, 1, 1]], np.float32), "NaN"),
])
def test_pipeline_model_rejects_bad_clouds_per_request(in_process: tuple, points: np.ndarray, problem: str) -> None:
    """A bad cloud gets an INVALID_ARG error response; the good request beside it is still scored."""
    _, _, pipeline = in_process
    good = np.random.default_rng(2).standard_normal((200, 3)).astype(np.float32)
    bad_resp, good_resp = pipeline.execute([_request(points), _request(good)])
    assert bad_resp.has_error() and problem in bad_resp.error().message()
    assert bad_resp.error().code == 3  # INVALID_ARG: HTTP 400 / gRPC INVALID_ARGUMENT
    assert not good_resp.has_error()


def test_python_encoder_batches_requests_and_splits_answers(in_process: tuple) -> None:
    """Requests the dynamic batcher merged run as one session call and get their own rows back."""
    from export_support import random_views

    _, pb, _ = in_process
    encoder = pb.models["align3d_encoder"]
    a, b = random_views(2, seed=1), random_views(3, seed=2)
    together = encoder.execute([Request([Tensor("views", a)]), Request([Tensor("views", b)])])
    alone = encoder.execute([Request([Tensor("views", np.concatenate([a, b]))])])[0]
    maps = np.concatenate([pb.get_output_tensor_by_name(r, "patch_maps").as_numpy() for r in together])
    assert [pb.get_output_tensor_by_name(r, "patch_maps").as_numpy().shape[0] for r in together] == [2, 3]
    np.testing.assert_allclose(maps, pb.get_output_tensor_by_name(alone, "patch_maps").as_numpy(), atol=1e-6)


def test_python_encoder_refuses_an_altered_graph(in_process: tuple, tmp_path: Path) -> None:
    import shutil

    from align3d_rt.errors import BundleError
    from align3d_rt.serving.triton_encoder import EncoderModel

    repo, _, _ = in_process
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    graph = copy / "align3d_encoder" / "1" / "model.onnx"
    graph.unlink()  # a hard link to the bundle copy: replace, do not edit in place
    graph.write_bytes((repo / "align3d_encoder" / "1" / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(BundleError, match="sha256 differs"):
        _load(copy, "align3d_encoder", EncoderModel, FakePbUtils())


def test_export_refuses_folders_it_did_not_write_and_replaces_its_own(tiny: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("user file")
    assert _export(tiny["fp32"], other) == 2
    assert "is not a Triton repository align3d-rt wrote" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]

    repo = tmp_path / "repo"
    assert _export(tiny["fp32"], repo) == 0
    assert _export(tiny["fp32"], repo, "--triton-encoder", "python") == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert _export(tiny["fp32"], repo, "--triton-encoder", "python", "--overwrite") == 0
    assert (repo / "align3d_encoder" / "1" / "model.py").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize("argv, message", [
    (["--run", "RUN"], "--bundle"),
    (["--bundle", "BUNDLE", "--triton-encoder", "openvino"], "no OpenVINO IR"),
    (["--bundle", "BUNDLE", "--triton-encoder", "tensorrt"], "no TensorRT engine"),
    (["--bundle", "BUNDLE", "--precision", "int8"], "copies the bundle as it is"),
    (["--bundle", "BUNDLE", "--opt-batch", "20"], "1 <= opt <= max"),
    (["--bundle", "BUNDLE", "--triton-name", "../x"], "--triton-name '../x': use letters"),
    (["--bundle", "BUNDLE", "--triton-instances", "0"], "argument --triton-instances: must be a positive integer"),
    (["--bundle", "BUNDLE", "--triton-queue-delay-us", "-1"],
     "argument --triton-queue-delay-us: must be an integer >= 0"),
])
def test_export_bad_choices_are_one_line(tiny: dict[str, Path], tmp_path: Path, argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tiny["run"]) if a == "RUN" else str(tiny["fp32"]) if a == "BUNDLE" else a for a in argv]
    assert main(["export", "--format", "triton", "--out", str(tmp_path / "repo"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "repo").exists()


def test_openvino_bundle_serves_its_ir_with_the_openvino_backend(tiny: dict[str, Path], tmp_path: Path) -> None:
    from align3d_rt.export.onnx_export import export_bundle

    bundle = export_bundle(tiny["run"], tmp_path / "ov", fmt="openvino")
    repo = tmp_path / "repo"
    assert _export(bundle, repo) == 0  # auto: the IR
    enc = _config(repo / "align3d_encoder" / "config.pbtxt")
    assert enc.backend == "openvino" and not enc.platform and enc.default_model_filename == "model.xml"
    assert [i.data_type for i in enc.input] == [model_config_pb2.TYPE_UINT8] and enc.max_batch_size == 18
    assert sorted(p.name for p in (repo / "align3d_encoder" / "1").iterdir()) == ["model.bin", "model.xml"]
    assert (repo / "align3d_encoder" / "1" / "model.xml").read_bytes() == (bundle / "encoder.xml").read_bytes()
    params = {k: v.string_value for k, v in enc.parameters.items()}
    assert params["PERFORMANCE_HINT"] == "LATENCY" and params["NUM_STREAMS"] == "1"  # one instance: all cores
    assert "INFERENCE_NUM_THREADS" not in params
    repo2 = tmp_path / "repo2"
    assert _export(bundle, repo2, "--triton-instances", "2", "--triton-threads", "3") == 0
    enc2 = _config(repo2 / "align3d_encoder" / "config.pbtxt")
    params2 = {k: v.string_value for k, v in enc2.parameters.items()}
    assert (params2["PERFORMANCE_HINT"], params2["NUM_STREAMS"], params2["INFERENCE_NUM_THREADS"]) == \
        ("THROUGHPUT", "2", "3")  # one stream per instance, so the two requests run at once
    assert [g.count for g in enc2.instance_group] == [2]


def test_tensorrt_engine_sets_the_plan_platform_gpu_instances_and_its_profile(tiny: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    """Config only: the 'engine' is a placeholder file indexed like a real one (no TensorRT here)."""
    import shutil

    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.artifacts.engine_index import record_engine

    bundle_dir = tmp_path / "b"
    shutil.copytree(tiny["fp32"], bundle_dir)
    bundle = load_bundle(bundle_dir)
    (bundle_dir / "engines").mkdir()
    (bundle_dir / "engines" / "gpu.engine").write_bytes(b"placeholder plan")
    record_engine(bundle, "gpu", {"file": "engines/gpu.engine", "gpu_name": "GPU", "tensorrt_version": "11",
                                  "min_batch": 1, "opt_batch": 9, "max_batch": 36, "onnx_sha256": bundle.onnx_sha256},
                  ["engines/gpu.engine"])
    repo = tmp_path / "repo"
    assert _export(bundle_dir, repo) == 0
    enc = _config(repo / "align3d_encoder" / "config.pbtxt")
    assert enc.platform == "tensorrt_plan" and enc.default_model_filename == "model.plan"
    assert enc.max_batch_size == 36 and list(enc.dynamic_batching.preferred_batch_size) == [9, 36]
    assert [g.kind for g in enc.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert (repo / "align3d_encoder" / "1" / "model.plan").read_bytes() == b"placeholder plan"


def test_overwrite_never_deletes_user_files_in_a_repository(tiny: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Issue #21: --overwrite replaces only what the marker lists; a user's file or model version: refused."""
    repo = tmp_path / "repo"
    assert _export(tiny["fp32"], repo) == 0
    marker = json.loads((repo / "align3d_triton.json").read_text())
    assert "README.md" in marker["files"] and all((repo / f).is_file() for f in marker["files"])
    for extra, named in ((repo / "notes.md", "notes.md"), (repo / "align3d_encoder" / "2" / "model.onnx",
                                                           "align3d_encoder/2")):
        extra.parent.mkdir(parents=True, exist_ok=True)
        extra.write_text("mine")
        capsys.readouterr()
        assert _export(tiny["fp32"], repo, "--overwrite") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "did not write" in err[0] and f"(e.g. {named})" in err[0], err
        assert extra.read_text() == "mine"
        extra.unlink()
        if extra.parent.name == "2":
            extra.parent.rmdir()
    assert _export(tiny["fp32"], repo, "--overwrite") == 0


def test_second_export_into_the_same_new_repository_fails(tmp_path: Path) -> None:
    """Two exports into one new --out: the one that finishes second fails with one line; the first stays."""
    from align3d_rt.errors import BundleError
    from align3d_rt.serving.triton_repository import staged_repository

    out = tmp_path / "repo"
    first, second = staged_repository(out), staged_repository(out)
    for ctx, who in ((first, "1"), (second, "2")):
        (ctx.__enter__() / "align3d_triton.json").write_text(json.dumps({"format": "align3d_rt.triton_repository",
                                                                          "who": who, "files": []}))
    first.__exit__(None, None, None)
    with pytest.raises(BundleError, match="another run meanwhile") as err:
        second.__exit__(None, None, None)
    assert "\n" not in str(err.value)
    assert json.loads((out / "align3d_triton.json").read_text())["who"] == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no staging folder left


def test_a_repository_replaced_meanwhile_is_not_replaced_again(tmp_path: Path) -> None:
    """--overwrite of a repository that another run replaced while this one was writing: refused, theirs stays
    (the bundle's rule: one staging function for both)."""
    from align3d_rt.errors import BundleError
    from align3d_rt.serving.triton_repository import staged_repository

    out = tmp_path / "repo"
    out.mkdir()
    marker = {"format": "align3d_rt.triton_repository", "files": []}
    (out / "align3d_triton.json").write_text(json.dumps({**marker, "who": "old"}))
    ctx = staged_repository(out)
    (ctx.__enter__() / "align3d_triton.json").write_text(json.dumps({**marker, "who": "mine"}))
    theirs = tmp_path / ".theirs"
    theirs.mkdir()
    (theirs / "align3d_triton.json").write_text(json.dumps({**marker, "who": "theirs"}))
    shutil.rmtree(out)
    theirs.rename(out)  # another export swapped its repository in meanwhile
    with pytest.raises(BundleError, match="another run meanwhile"):
        ctx.__exit__(None, None, None)
    assert json.loads((out / "align3d_triton.json").read_text())["who"] == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_an_earlier_repository_is_replaced_whole(tmp_path: Path) -> None:
    from align3d_rt.serving.triton_repository import staged_repository

    out = tmp_path / "repo"
    out.mkdir()
    marker = {"format": "align3d_rt.triton_repository", "files": ["old.txt"]}
    (out / "align3d_triton.json").write_text(json.dumps(marker))
    (out / "old.txt").write_text("old")
    with staged_repository(out) as stage:
        (stage / "align3d_triton.json").write_text(json.dumps({**marker, "files": []}))
    assert sorted(p.name for p in out.iterdir()) == ["align3d_triton.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # the old one is gone, no staging left


def test_the_written_model_py_files_load_and_answer(in_process: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each model.py the export writes, imported from its file as Triton's Python stub does, finds the
    align3d_rt.serving module it names and answers a request (a moved module would break exactly here)."""
    import importlib.util
    import sys

    repo, _, _ = in_process
    pb = FakePbUtils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    models = {}
    for name in ("align3d_encoder", "align3d"):
        spec = importlib.util.spec_from_file_location(f"model_{name}", repo / name / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = json_format.MessageToDict(_config(repo / name / "config.pbtxt"), preserving_proto_field_name=True)
        models[name] = module.TritonPythonModel()
        models[name].initialize({"model_config": json.dumps(config), "model_repository": str(repo / name),
                                 "model_version": "1"})
        pb.models[name] = models[name]
    pts = np.random.default_rng(2).standard_normal((200, 3)).astype(np.float32)
    (resp,) = models["align3d"].execute([_request(pts)])
    assert not resp.has_error() and pb.bls_batches == [9]
    out = {t.name(): t.as_numpy() for t in resp.output_tensors}
    assert out["point_scores"].shape == (200, 3) and np.isfinite(out["point_scores"]).all()
    for model in models.values():
        model.finalize()


def test_the_encoder_model_stands_alone() -> None:
    """The encoder model imports neither the pipeline model nor the Detector (each Triton model stands alone)."""
    import subprocess
    import sys

    code = ("import sys, align3d_rt.serving.triton_encoder\n"
            "print(sorted(m for m in sys.modules if m.startswith('align3d_rt.serving.triton_pipeline') "
            "or m.startswith('align3d_rt.runtime.detector')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:] + out.stdout
