"""Serving on a Triton Inference Server: the repository writer, its two models and the client.

- ``triton_repository`` / ``triton_config``: ``align3d-rt export --format triton`` (a bundle -> a model
  repository; the on-disk contract is ``align3d_rt.artifacts.triton_layout``).
- ``triton_pipeline``: the pipeline model (render, encoder by BLS, back-project, fuse, score with the
  runtime's Detector); ``triton_encoder``: the Python-backend encoder model. Each stands alone: the
  repository's ``model.py`` files import one each, by name.
- ``triton_client``: ``TritonScorer``, the client ``align3d-rt infer --triton URL`` scores with.

Layering: above the runtime (it uses the Detector, the runners' loaders and the artifacts), beside
eval/; nothing below imports it.
"""
