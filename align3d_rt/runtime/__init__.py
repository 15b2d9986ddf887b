"""The deployment runtime: encoder runners behind one base class and one registry, the Detector
pipeline (host or CUDA device, pipelined over many clouds), the ``Scorer`` protocol and the
machine probes (``devices``).

Layering: the runtime reads artifacts (``align3d_rt.artifacts``) and uses render/, kernels/ and the
scoring rules; it never imports train/, export/ or serving/ (serving and export sit above it).
Heavy modules (torch, onnxruntime, tensorrt) are imported only by the runner that needs them, when it is created.
"""
