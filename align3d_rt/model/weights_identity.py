"""Identity of CLIP weights by their tensors, not by the file that held them.

The same weights stored as OpenAI's TorchScript .pt, a plain state-dict .pt, a safetensors file or
the Hugging Face hub cache must be recognised as one, and a moved or renamed file as the same. So the
identity is a sha256 over the tensors *as loaded into the model* (every entry of its state dict,
sorted by name: name, dtype, shape, raw bytes); file names, container formats and storage dtypes
that the model converts on load do not enter it.
"""
from __future__ import annotations

import hashlib
from typing import Any

PREFIX = "tensors-sha256:"


def tensor_digest(state: dict[str, Any]) -> str:
    """``tensors-sha256:<hex>`` of a state dict (torch tensors or numpy arrays)."""
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        arr = value.detach().cpu().contiguous().numpy() if hasattr(value, "detach") else np.ascontiguousarray(value)
        h.update(name.encode("utf-8") + b"\0")
        h.update(str(arr.dtype).encode("ascii") + b"\0")
        h.update(repr(tuple(int(d) for d in arr.shape)).encode("ascii") + b"\0")
        h.update(arr.tobytes())
    return PREFIX + h.hexdigest()


def is_tensor_id(weights_id: str | None) -> bool:
    return bool(weights_id) and str(weights_id).startswith(PREFIX)


def is_file_id(weights_id: str | None) -> bool:
    """Runs made before tensor identities recorded the weights file's sha256 (64 hex digits)."""
    w = str(weights_id or "")
    return len(w) == 64 and all(c in "0123456789abcdef" for c in w)
