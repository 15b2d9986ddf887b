"""Triton pipeline with a calibration (export --format triton --calibration CAL): the per-part
decision JSON, normalised point scores and region labels equal local decisions (runtime/decisions.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_support import session_samples, session_tiny
from triton_fakes import FakePbUtils, Request, Tensor

from align3d_rt.cli import main

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is in requirements.txt")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return session_tiny(tmp_path_factory.mktemp("tiny"))


def _calibration(bundle: Path, path: Path, manifest_sha256: str | None = None) -> Path:
    """A calibration of ``bundle`` (or of another digest) with thresholds that give regions on the samples."""
    from align3d_rt.artifacts.bundle import load_bundle
    from align3d_rt.artifacts.calibration import save_calibration
    from align3d_rt.eval.calibration import fit_calibration

    digest = manifest_sha256 or load_bundle(bundle).manifest["manifest_sha256"]
    rng = np.random.default_rng(0)
    good_points = [rng.uniform(0.0, 0.05, 500).astype(np.float32) for _ in range(19)]
    cal = fit_calibration(list(np.linspace(0.0, 1.0, 19)), good_points, product="dome",
                          source={"kind": "bundle", "manifest_sha256": digest}, min_points=3)
    return save_calibration(cal, path)


def _load(repo: Path, name: str, cls: type, pb: FakePbUtils) -> object:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    parsed = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config = json_format.MessageToDict(parsed, preserving_proto_field_name=True)
    model = cls({"model_config": json.dumps(config), "model_repository": str(repo / name), "model_version": "1"}, pb)
    pb.models[name] = model
    return model


def test_triton_decisions_equal_local_decisions(tiny: dict[str, Path], tmp_path: Path,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    from align3d_rt.artifacts.calibration import load_calibration
    from align3d_rt.runtime.decisions import decide
    from align3d_rt.runtime.detector import Detector
    from align3d_rt.serving.triton_encoder import EncoderModel
    from align3d_rt.serving.triton_pipeline import PipelineModel

    cal_path = _calibration(tiny["fp32"], tmp_path / "cal.json")
    repo = tmp_path / "repo"
    assert main(["export", "--format", "triton", "--bundle", str(tiny["fp32"]), "--out", str(repo),
                 "--triton-encoder", "python", "--calibration", str(cal_path)]) == 0
    assert (repo / "align3d" / "1" / "calibration.json").read_bytes() == cal_path.read_bytes()
    config = (repo / "align3d" / "config.pbtxt").read_text()
    for name in ("decision", "point_scores_normalized", "region_labels"):
        assert f'name: "{name}"' in config
    pb = FakePbUtils()
    _load(repo, "align3d_encoder", EncoderModel, pb)
    pipeline = _load(repo, "align3d", PipelineModel, pb)
    samples = session_samples(tmp_path_factory.mktemp("samples"), n=3)
    requests = [Request([Tensor("points", s.points), Tensor("dataset", np.array([s.dataset.encode()], dtype=object)),
                         Tensor("category", np.array([s.category.encode()], dtype=object))]) for s in samples]
    responses = pipeline.execute(requests)  # type: ignore[attr-defined]
    cal = load_calibration(cal_path)
    with Detector.from_bundle(tiny["fp32"], backend="onnxruntime", device="cpu") as local:
        expected = local.score(samples, keep_render=False)
    n_regions = 0
    for sample, resp, exp in zip(samples, responses, expected, strict=True):
        assert not resp.has_error()
        out = {t.name(): t.as_numpy() for t in resp.output_tensors}
        want = decide(sample.points, exp.fused, exp.object_score, cal)
        got = json.loads(out["decision"][0].decode("utf-8"))
        ref = want.to_json()
        assert got["decision"] == ref["decision"] and got["num_regions"] == ref["num_regions"]
        assert got["object_score_normalized"] == pytest.approx(ref["object_score_normalized"], abs=1e-5)
        for g, r in zip(got["regions"], ref["regions"], strict=True):
            assert {k: v for k, v in g.items() if not isinstance(v, float) and not isinstance(v, list)} == \
                   {k: v for k, v in r.items() if not isinstance(v, float) and not isinstance(v, list)}
            assert g["max_score"] == pytest.approx(r["max_score"], abs=1e-5)
        np.testing.assert_allclose(out["point_scores_normalized"], want.normalized, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(out["region_labels"], want.regions.labels)
        assert out["region_labels"].dtype == np.int32 and out["point_scores_normalized"].dtype == np.float32
        n_regions += got["num_regions"]
    assert n_regions > 0  # the thresholds above make regions: the comparison is not vacuous


def test_export_refuses_a_calibration_of_another_bundle(tiny: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cal_path = _calibration(tiny["fp32"], tmp_path / "other.json", manifest_sha256="d" * 64)
    repo = tmp_path / "repo"
    rc = main(["export", "--format", "triton", "--bundle", str(tiny["fp32"]), "--out", str(repo),
               "--calibration", str(cal_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "calibration is for bundle" in err[0]
    assert not repo.exists()


class _Input:
    def __init__(self, name: str, shape: list[int], dtype: str) -> None:
        self.name, self.data = name, None

    def set_data_from_numpy(self, array: np.ndarray) -> None:
        self.data = array


class _Output:
    def __init__(self, name: str) -> None:
        self.name = name


class _Answer:
    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.tensors = tensors

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.tensors.get(name)


class _InProcessClient:
    """tritonclient's InferenceServerClient.infer, answered by the pipeline model in this process."""

    def __init__(self, pipeline: object) -> None:
        self.pipeline = pipeline

    def infer(self, model: str, inputs: list[_Input], outputs: list[_Output] | None = None) -> _Answer:
        from tritonclient.utils import InferenceServerException

        request = Request([Tensor(i.name, i.data) for i in inputs], [o.name for o in outputs or []])
        (response,) = self.pipeline.execute([request])  # type: ignore[attr-defined]
        if response.has_error():
            raise InferenceServerException(response.error().message())
        wanted = {o.name for o in outputs or []}
        return _Answer({t.name(): t.as_numpy() for t in response.output_tensors if t.name() in wanted})

    def close(self) -> None:
        pass


def test_infer_triton_writes_what_local_infer_calibration_writes(tiny: dict[str, Path], tmp_path: Path,
                                                                tmp_path_factory: pytest.TempPathFactory,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``infer --triton`` against a calibrated repository (the client's requests answered in-process by the
    pipeline model) writes the files and scores.json fields of local ``infer --bundle --calibration``."""
    from types import SimpleNamespace

    from align3d_rt.artifacts.triton_layout import model_parameters
    from align3d_rt.cli import infer as infer_cli
    from align3d_rt.serving.triton_client import TritonScorer
    from align3d_rt.serving.triton_encoder import EncoderModel
    from align3d_rt.serving.triton_pipeline import PipelineModel

    cal_path = _calibration(tiny["fp32"], tmp_path / "cal.json")
    repo = tmp_path / "repo"
    assert main(["export", "--format", "triton", "--bundle", str(tiny["fp32"]), "--out", str(repo),
                 "--triton-encoder", "python", "--calibration", str(cal_path)]) == 0
    pb = FakePbUtils()
    _load(repo, "align3d_encoder", EncoderModel, pb)
    pipeline = _load(repo, "align3d", PipelineModel, pb)
    files = []
    for i, s in enumerate(session_samples(tmp_path_factory.mktemp("samples"), n=3)):
        files.append(tmp_path / f"cloud{i}.npy")
        np.save(files[-1], s.points)
    local = tmp_path / "local"
    assert main(["infer", "--bundle", str(tiny["fp32"]), "--backend", "onnxruntime", "--device", "cpu",
                 "--calibration", str(cal_path), "--out", str(local), "--no-ply", "--no-png",
                 *map(str, files)]) == 0

    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = json_format.MessageToDict(text_format.Parse((repo / "align3d" / "config.pbtxt").read_text(),
                                                         model_config_pb2.ModelConfig()),
                                       preserving_proto_field_name=True)
    remote = TritonScorer("http://127.0.0.1:8000")
    remote._lib = SimpleNamespace(InferInput=_Input, InferRequestedOutput=_Output)
    remote._client = _InProcessClient(pipeline)
    remote.params = model_parameters(config)
    monkeypatch.setattr(infer_cli, "triton_scorer", lambda args: remote)
    served = tmp_path / "served"
    assert main(["infer", "--triton", "http://127.0.0.1:8000", "--out", str(served), "--no-ply", "--no-png",
                 *map(str, files)]) == 0

    a = json.loads((local / "scores.json").read_text())
    b = json.loads((served / "scores.json").read_text())
    drop = ("file",)
    assert {k: v for k, v in a["calibration"].items() if k not in drop} == \
           {k: v for k, v in b["calibration"].items() if k not in drop}
    assert a["samples"].keys() == b["samples"].keys() and len(a["samples"]) == 3
    n_regions = 0
    for key, la in a["samples"].items():
        lb = b["samples"][key]
        assert set(la["outputs"]) == set(lb["outputs"]) and {"normalized", "regions"} <= set(la["outputs"])
        assert la["decision"] == lb["decision"] and la["num_regions"] == lb["num_regions"]
        assert la["object_score_normalized"] == pytest.approx(lb["object_score_normalized"], abs=1e-5)
        for ra, rb in zip(la["regions"], lb["regions"], strict=True):
            assert ra.keys() == rb.keys()
            assert (ra["id"], ra["num_points"], ra["seed_index"]) == (rb["id"], rb["num_points"], rb["seed_index"])
            assert ra["max_score"] == pytest.approx(rb["max_score"], abs=1e-5)
        np.testing.assert_allclose(np.load(local / la["outputs"]["normalized"]),
                                   np.load(served / lb["outputs"]["normalized"]), atol=1e-5, rtol=0)
        np.testing.assert_array_equal(np.load(local / la["outputs"]["regions"]),
                                      np.load(served / lb["outputs"]["regions"]))
        n_regions += la["num_regions"]
    assert n_regions > 0


def test_infer_triton_with_a_calibration_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --triton the calibration is the served repository's: a local --calibration is refused before any
    connection or output."""
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.zeros((10, 3), np.float32))
    rc = main(["infer", "--triton", "http://127.0.0.1:1", "--calibration", str(tmp_path / "cal.json"),
               "--out", str(tmp_path / "o"), str(cloud)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "served repository carries the calibration" in err[0]
    assert not (tmp_path / "o").exists()


def test_pipeline_refuses_an_edited_calibration_copy_at_load(tiny: dict[str, Path], tmp_path: Path) -> None:
    from align3d_rt.errors import Align3DError
    from align3d_rt.serving.triton_pipeline import PipelineModel

    cal_path = _calibration(tiny["fp32"], tmp_path / "cal.json")
    repo = tmp_path / "repo"
    assert main(["export", "--format", "triton", "--bundle", str(tiny["fp32"]), "--out", str(repo),
                 "--triton-encoder", "python", "--calibration", str(cal_path)]) == 0
    copy = repo / "align3d" / "1" / "calibration.json"
    data = json.loads(copy.read_text())
    data["object"]["threshold"] = data["object"]["lo"]  # still valid numbers, but not what was sealed
    copy.write_text(json.dumps(data, indent=2, sort_keys=True))
    with pytest.raises(Align3DError, match="checksum mismatch"):
        _load(repo, "align3d", PipelineModel, FakePbUtils())
