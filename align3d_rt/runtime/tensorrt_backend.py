"""TensorRT encoder backend: runs the bundle's cached engine for this GPU (TensorRT 10.12+/11 API).

IO goes through torch CUDA tensors (``set_tensor_address`` + ``execute_async_v3`` on torch's current
stream), so ``infer(views, copy_outputs_to_host=False)`` hands GPU tensors to the CUDA
back-projection kernels without copies, and device views (torch tensors, numba device arrays) are
used in place. Without torch, pycuda buffers are used (host arrays in and out). TensorRT,
torch-with-CUDA and pycuda are all optional. Engines are selected from the bundle's engine index,
never built here: ``align3d-rt export --tensorrt`` builds them.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from align3d_rt.artifacts.bundle import INPUT_NAME, OUTPUT_NAMES, Bundle
from align3d_rt.artifacts.engine_index import select_engine
from align3d_rt.errors import BackendUnavailable, BundleError
from align3d_rt.runtime.base import BundleRunner, EncoderOutput
from align3d_rt.runtime.devices import gpu_name, import_tensorrt


class TrtBackend(BundleRunner):
    """Runner over a TensorRT engine. ``with TrtBackend(bundle) as b: out = b.infer(views)``.

    The engine's profile (min_batch, max_batch) is read on activation and dropped on deactivation;
    ``max_batch`` stays the caller's limit (None: the engine's)."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle | str | os.PathLike[str], device_index: int = 0,
                 engine_key: str | None = None, max_batch: int | None = None) -> None:
        super().__init__(bundle, max_batch=max_batch, device="cuda")
        self.device_index = device_index
        self.engine_key = engine_key
        self.min_batch = 1
        self._engine_max_batch: int | None = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._io: Any = None
        self._dtypes: dict[str, np.dtype] = {}

    def _batch_limit(self) -> int | None:
        return self._engine_max_batch

    @property
    def stream(self) -> Any:
        if isinstance(self._io, _TorchIO):
            from numba import cuda

            return cuda.external_stream(self._io.stream_handle())
        return 0

    def _activate_impl(self) -> None:
        trt = import_tensorrt()
        key, entry = select_engine(self.bundle, gpu_name(self.device_index), trt.__version__, key=self.engine_key)
        data = (self.bundle.path / entry["file"]).read_bytes()
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise BundleError(f"{self.bundle.path / entry['file']}: TensorRT cannot deserialize the engine; rebuild it")
        self._context = self._engine.create_execution_context()
        self._dtypes = {name: np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))) for name in OUTPUT_NAMES}
        self._engine_max_batch = int(entry["max_batch"])
        self.min_batch = int(entry["min_batch"])
        self._io = _TorchIO(self.device_index) if _torch_cuda() else _PycudaIO(self.device_index)

    def _deactivate_impl(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
        self._io = None
        self._dtypes = {}
        self._engine_max_batch = None
        self.min_batch = 1

    def _infer_impl(self, views: Any) -> EncoderOutput:
        """One chunk of at most max_batch views; device outputs (torch) or host outputs (pycuda)."""
        chunk = self._io.to_device(views)
        n = int(chunk.shape[0])
        pad = max(0, self.min_batch - n)
        if pad:
            chunk = self._io.pad(chunk, pad)
        self._context.set_input_shape(INPUT_NAME, tuple(chunk.shape))
        outs = {name: self._io.empty(tuple(self._context.get_tensor_shape(name)), self._dtypes[name])
                for name in OUTPUT_NAMES}
        self._context.set_tensor_address(INPUT_NAME, self._io.address(chunk))
        for name, buf in outs.items():
            self._context.set_tensor_address(name, self._io.address(buf))
        if not self._context.execute_async_v3(self._io.stream_handle()):
            raise BundleError(f"{self.bundle.path}: TensorRT execution failed")
        maps, probs = outs[OUTPUT_NAMES[0]][:n], outs[OUTPUT_NAMES[1]][:n]
        return EncoderOutput(patch_maps=self._io.result(maps), global_probs=self._io.result(probs))


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class _TorchIO:
    """Device buffers as torch CUDA tensors, work on torch's current stream."""

    def __init__(self, device: int) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda", device)

    def to_device(self, views: Any) -> Any:
        t = self.torch
        if isinstance(views, np.ndarray):
            x = t.from_numpy(np.ascontiguousarray(views))
        else:
            x = t.as_tensor(views, device=self.device)  # torch tensor or __cuda_array_interface__: no copy
        if x.dtype != t.uint8:
            raise ValueError(f"views must be uint8, got {x.dtype}")
        return x.to(self.device, non_blocking=True).contiguous()

    def pad(self, x: Any, n: int) -> Any:
        return self.torch.cat([x, x[-1:].expand(n, *x.shape[1:])]).contiguous()

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        torch_dtype = self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return self.torch.empty(shape, dtype=torch_dtype, device=self.device)

    def address(self, x: Any) -> int:
        return int(x.data_ptr())

    def stream_handle(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def result(self, x: Any) -> Any:
        return x.float()  # stays on the device, ordered on this stream


class _PycudaIO:
    """Fallback without torch: pycuda device allocations on one stream (host arrays in, host arrays out)."""

    def __init__(self, device: int) -> None:
        try:
            import pycuda.autoinit  # noqa: F401 - creates the context
            import pycuda.driver as cuda
        except Exception as err:  # noqa: BLE001
            raise BackendUnavailable(f"TensorRT IO needs torch with CUDA or pycuda; neither works here "
                                     f"({err})") from None
        self.cuda = cuda
        self.stream = cuda.Stream()

    def to_device(self, views: Any) -> _DeviceArray:
        host = np.ascontiguousarray(views, dtype=np.uint8)
        return _DeviceArray.from_host(self.cuda, host, self.stream)

    def pad(self, x: _DeviceArray, n: int) -> _DeviceArray:
        host = x.get(self.stream)
        return self.to_device(np.concatenate([host, np.repeat(host[-1:], n, axis=0)]))

    def empty(self, shape: tuple[int, ...], dtype: Any) -> _DeviceArray:
        return _DeviceArray.empty(self.cuda, shape, np.dtype(dtype))

    def address(self, x: _DeviceArray) -> int:
        return int(x.ptr)

    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def result(self, x: _DeviceArray) -> np.ndarray:
        return np.asarray(x.get(self.stream), dtype=np.float32)


class _DeviceArray:
    """Minimal device buffer with a shape, row slicing and a host copy (pycuda path)."""

    def __init__(self, cuda: Any, alloc: Any, shape: tuple[int, ...], dtype: np.dtype, offset_rows: int = 0,
                 rows: int | None = None) -> None:
        self.cuda, self.alloc, self.full_shape, self.dtype = cuda, alloc, shape, dtype
        self.offset_rows = offset_rows
        self.rows = shape[0] if rows is None else rows

    @classmethod
    def empty(cls, cuda: Any, shape: tuple[int, ...], dtype: np.dtype) -> _DeviceArray:
        return cls(cuda, cuda.mem_alloc(max(1, int(np.prod(shape)) * dtype.itemsize)), shape, dtype)

    @classmethod
    def from_host(cls, cuda: Any, host: np.ndarray, stream: Any) -> _DeviceArray:
        arr = cls.empty(cuda, host.shape, host.dtype)
        cuda.memcpy_htod_async(arr.alloc, host, stream)
        return arr

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.full_shape[1:])) * self.dtype.itemsize

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, *self.full_shape[1:])

    @property
    def ptr(self) -> int:
        return int(self.alloc) + self.offset_rows * self.row_bytes

    def __getitem__(self, sl: slice) -> _DeviceArray:
        start, stop, _ = sl.indices(self.rows)
        return _DeviceArray(self.cuda, self.alloc, self.full_shape, self.dtype, self.offset_rows + start, stop - start)

    def get(self, stream: Any) -> np.ndarray:
        host = np.empty(self.shape, self.dtype)
        self.cuda.memcpy_dtoh_async(host, self.ptr, stream)
        stream.synchronize()
        return host
