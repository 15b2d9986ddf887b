"""The ``config.pbtxt`` of the two Triton models, built as tritonclient's ``ModelConfig`` protobuf.

Building the message (instead of writing text by hand) means every field name and enum value is
checked by protobuf itself; ``to_pbtxt`` prints it in Triton's text format.

Encoder kinds (``ENCODER_KINDS``): Triton's own platform/backend for the bundle's engine
(``onnxruntime_onnx`` model.onnx, ``openvino`` model.xml/.bin, ``tensorrt_plan`` model.plan), or
``python``: a Python-backend model running ONNX Runtime on model.onnx (for servers built with the
Python backend only, such as pytriton's). All four declare the same inputs and outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align3d_rt.artifacts import triton_layout as tp
from align3d_rt.artifacts.bundle import INPUT_NAME, OUTPUT_NAMES

ONNX, OPENVINO, TENSORRT, PYTHON = "onnx", "openvino", "tensorrt", "python"
ENCODER_KINDS = (ONNX, OPENVINO, TENSORRT, PYTHON)
# kind -> (config field, Triton's platform/backend name, the model file(s) in the version folder)
ENCODER_SERVING = {
    ONNX: ("platform", "onnxruntime_onnx", ("model.onnx",)),
    OPENVINO: ("backend", "openvino", ("model.xml", "model.bin")),
    TENSORRT: ("platform", "tensorrt_plan", ("model.plan",)),
    PYTHON: ("backend", "python", ("model.py", "model.onnx")),
}


def model_config_pb2() -> Any:
    """tritonclient's ModelConfig protobuf module (one line with the install hint when missing)."""
    from align3d_rt.errors import import_backend

    return import_backend("tritonclient.grpc.model_config_pb2", "tritonclient",
                          "pip install 'tritonclient[grpc,http]' (requirements.txt pins it)")


@dataclass(frozen=True)
class EncoderServing:
    """How the encoder model is served: kind, batching and instances."""

    kind: str
    max_batch: int
    preferred_batches: tuple[int, ...]
    max_queue_delay_us: int
    instances: int
    gpu: bool


def _params(config: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def encoder_config(name: str, serving: EncoderServing, image_size: int, grid_size: int,
                   parameters: dict[str, Any]) -> Any:
    """ModelConfig of the encoder: views uint8 (B,S,S,3) -> patch_maps (B,2,G,G), global_probs (B,2)."""
    pb = model_config_pb2()
    field, value, files = ENCODER_SERVING[serving.kind]
    config = pb.ModelConfig(name=name, max_batch_size=serving.max_batch)
    setattr(config, field, value)
    if serving.kind != PYTHON:
        config.default_model_filename = files[0]
    config.input.add(name=INPUT_NAME, data_type=pb.TYPE_UINT8, dims=[image_size, image_size, 3])
    config.output.add(name=OUTPUT_NAMES[0], data_type=pb.TYPE_FP32, dims=[2, grid_size, grid_size])
    config.output.add(name=OUTPUT_NAMES[1], data_type=pb.TYPE_FP32, dims=[2])
    config.dynamic_batching.preferred_batch_size.extend(serving.preferred_batches)
    config.dynamic_batching.max_queue_delay_microseconds = serving.max_queue_delay_us
    kind = pb.ModelInstanceGroup.KIND_GPU if serving.gpu else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=serving.instances, kind=kind)
    _params(config, parameters)
    return config


def pipeline_config(name: str, instances: int, image_size: int, grid_size: int, parameters: dict[str, Any],
                    calibrated: bool = False) -> Any:
    """ModelConfig of the Python-backend pipeline: one cloud per request (no batch dimension); with a
    calibration also the decision outputs (§13.5)."""
    pb = model_config_pb2()
    config = pb.ModelConfig(name=name, backend="python", max_batch_size=0)
    config.input.add(name=tp.POINTS, data_type=pb.TYPE_FP32, dims=[-1, 3])
    config.input.add(name=tp.DATASET, data_type=pb.TYPE_STRING, dims=[1], optional=True)
    config.input.add(name=tp.CATEGORY, data_type=pb.TYPE_STRING, dims=[1], optional=True)
    config.output.add(name=tp.POINT_SCORES, data_type=pb.TYPE_FP32, dims=[-1, 3])
    config.output.add(name=tp.OBJECT_SCORE, data_type=pb.TYPE_FP32, dims=[1])
    config.output.add(name=tp.GLOBAL_PROBS, data_type=pb.TYPE_FP32, dims=[-1, 2])
    config.output.add(name=tp.VIEW_MAPS, data_type=pb.TYPE_FP32, dims=[-1, 2, grid_size, grid_size])
    config.output.add(name=tp.VIEWS, data_type=pb.TYPE_UINT8, dims=[-1, image_size, image_size, 3])
    if calibrated:
        config.output.add(name=tp.DECISION, data_type=pb.TYPE_STRING, dims=[1])
        config.output.add(name=tp.POINT_SCORES_NORMALIZED, data_type=pb.TYPE_FP32, dims=[-1])
        config.output.add(name=tp.REGION_LABELS, data_type=pb.TYPE_INT32, dims=[-1])
    config.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.KIND_CPU)
    _params(config, parameters)
    return config


def to_pbtxt(config: Any) -> str:
    """The config in protobuf text format, as Triton reads ``config.pbtxt``."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)
