"""Regenerate cpp/tests/data/bundle: a small bundle whose manifest checksum is computed by Python.

The encoder files are placeholder bytes: the bundle tests check verification only, not inference.
Run from the repository root: python cpp/tests/data/make_fixture.py
"""
from pathlib import Path

from align3d_rt.artifacts.bundle import hash_files, write_manifest

root = Path(__file__).resolve().parent / "bundle"
root.mkdir(exist_ok=True)
(root / "encoder.onnx").write_bytes(b"placeholder onnx graph\n")
(root / "encoder.xml").write_bytes(b"<net/>\n")
(root / "encoder.bin").write_bytes(bytes(range(256)))
manifest = {
    "precision": "fp32", "opset": 17, "image_size": 336, "grid_size": 24, "fusion_weight": 0.5,
    "temperature": 0.07, "view_preset": "mvtec9", "num_views": 9,
    "onnx": {"file": "encoder.onnx", "fp32_ops": [], "quantization": None,
             "export_check": {"batches": [1, 3], "max_abs_diff_vs_torch": {"1": 7.748603820800781e-07, "3": 1e-05},
                              "input": "random uint8 views"}},
    "render_settings": {"preset": "mvtec9", "image_size": 336, "renderer": "splat", "point_size": 8, "window": 1024,
                        "normal_radius": 0.1, "normal_max_nn": 50, "gray": 0.7, "extra": {},
                        "views": [["x", -45.0], ["y", 30.0]]},
    "clip": {"name": "align3d-tiny", "weights": None, "weights_id": "random:0", "arch": None, "embed_dim": 128,
             "dpam_start": None},
    "scoring": {"rules_version": 1, "grid_blur_sigma": 4.0, "note": "caf\u00e9 \U0001f600 \"q\" \\ /\n\t\x01\x7f",
                "big": 1234567890123456789, "tiny": 1e-300, "large": 1e16, "neg": -0.0, "third": 1 / 3},
    "openvino": {"xml": "encoder.xml", "bin": "encoder.bin", "precision": "fp32"},
    "engines": {},
    "files": hash_files(root, ["encoder.onnx", "encoder.xml", "encoder.bin"]),
}
write_manifest(root, manifest)
print(f"wrote {root}")
