"""The encoder as a Triton Python-backend model: ONNX Runtime on the repository's ``model.onnx``.

For servers that have only the Python backend (pytriton's bundled ``tritonserver``). Same model
name, inputs and outputs as the native ``onnxruntime_onnx`` model, so the pipeline cannot tell them
apart. Triton's dynamic batcher hands ``execute`` several requests at once: their views are
concatenated into one ``session.run`` and the outputs split back per request.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import INPUT_NAME, OUTPUT_NAMES
from align3d_rt.artifacts.triton_layout import model_parameters
from align3d_rt.errors import BundleError
from align3d_rt.io_utils import sha256_file


def open_session(path: Path, precision: str, threads: int) -> Any:
    """An ONNX Runtime CPU session with the settings the runtime's CPU runner uses."""
    from align3d_rt.loaders import OrtSessionLoader

    return OrtSessionLoader(path, precision, threads)()


class EncoderModel:
    """The work of the Python encoder model's ``TritonPythonModel``."""

    def __init__(self, args: dict[str, Any], pb_utils: Any) -> None:
        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = model_parameters(config)
        path = Path(args["model_repository"]) / str(args["model_version"]) / params.get("onnx_file", "model.onnx")
        if not path.is_file():
            raise BundleError(f"{path}: encoder graph missing from the repository; export it again")
        if sha256_file(path) != params.get("onnx_sha256"):
            raise BundleError(f"{path}: sha256 differs from the one recorded at export (altered or corrupt)")
        self.session = open_session(path, params.get("precision", "fp32"), int(params.get("threads", "0") or 0))

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        views = [pb.get_input_tensor_by_name(r, INPUT_NAME).as_numpy() for r in requests]
        counts = [int(v.shape[0]) for v in views]
        try:
            maps, probs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.concatenate(views)})
        except Exception as err:  # noqa: BLE001 - reported to every request of the batch
            error = pb.TritonError(f"encoder: {str(err).splitlines()[0]}")
            return [pb.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        out, start = [], 0
        for n in counts:
            part = slice(start, start + n)
            out.append(pb.InferenceResponse(output_tensors=[
                pb.Tensor(OUTPUT_NAMES[0], np.ascontiguousarray(maps[part], np.float32)),
                pb.Tensor(OUTPUT_NAMES[1], np.ascontiguousarray(probs[part], np.float32))]))
            start += n
        return out
