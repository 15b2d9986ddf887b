"""The formats that cross boundaries, one module each (write, read, validate, migrate; versioned).

- ``run_dir``: a training run directory (written by train/, read by export/ and the runtime).
- ``bundle``: an exported bundle and its integrity-protected manifest (written by export/).
- ``engine_index``: the TensorRT engines cached inside a bundle, keyed by GPU, TensorRT and shapes.
- ``triton_layout``: a Triton model repository's names and tensors (written by serving/, read by its models).
- ``calibration``: a calibration file (docs/runtime-spec.md section 13).

This package imports neither torch nor onnxruntime: the line-side runtime reads these formats.
"""
