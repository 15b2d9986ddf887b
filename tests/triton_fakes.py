"""A stand-in for ``triton_python_backend_utils`` (it exists only inside Triton's Python stub).

Enough of its API for the repository's two Python models: tensors, requests, responses, errors and
BLS (``InferenceRequest.exec`` calls the named model's ``execute`` in-process), so the pipeline's
scoring path can be compared with local inference without a server.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError(Exception):
    INVALID_ARG = 3

    def __init__(self, msg: str, code: int | None = None) -> None:
        super().__init__(msg)
        self.code = code

    def message(self) -> str:
        return str(self)


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self.output_tensors, self._error = output_tensors, error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class Request:
    """A request as ``execute`` receives it."""

    def __init__(self, inputs: list[Tensor], requested: list[str] | None = None) -> None:
        self.inputs = {t.name(): t for t in inputs}
        self.requested = list(requested or [])

    def requested_output_names(self) -> list[str]:
        return self.requested


class FakePbUtils:
    """The module object handed to the models: ``models`` maps names to objects with ``execute``."""

    Tensor = Tensor
    TritonError = TritonError
    InferenceResponse = InferenceResponse

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}
        self.bls_batches: list[int] = []
        pb = self

        class InferenceRequest:
            def __init__(self, model_name: str, inputs: list[Tensor], requested_output_names: list[str],
                         timeout: int = 0) -> None:
                self.model_name, self.request = model_name, Request(inputs, requested_output_names)

            def exec(self) -> InferenceResponse:
                pb.bls_batches.append(int(next(iter(self.request.inputs.values())).as_numpy().shape[0]))
                return pb.models[self.model_name].execute([self.request])[0]

        self.InferenceRequest = InferenceRequest

    @staticmethod
    def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
        return request.inputs.get(name)

    @staticmethod
    def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
        return next((t for t in response.output_tensors if t.name() == name), None)
