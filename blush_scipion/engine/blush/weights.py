"""Loading denoiser weights without ever running code from the file.

Ours are safetensors. RELION's `blush_v1.0.ckpt(.gz)` is a torch checkpoint (a dict with
model_state_dict, voxel_size, block_size and the model's source): it is read with
`torch.load(weights_only=True)`, which refuses any pickled object that is not a tensor or a
plain container, and its source code is never executed. A sha256 is checked when given.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle

import torch


class WeightsError(ValueError):
    """Weights that cannot be used, with the file named in the message."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """Tensors (and plain values) of a weights file: .safetensors, or a torch checkpoint
    (.ckpt/.pt, optionally gzipped) read without unpickling code."""
    path = str(path)
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such weights file")
    if sha256 is not None and sha256_of(path) != sha256.lower():
        raise WeightsError(f"{path}: sha256 {sha256_of(path)} does not match the expected {sha256}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    raw = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as e:
        raise WeightsError(f"{path}: refused, the checkpoint holds pickled objects other than tensors "
                           f"(it could run code when loaded): {str(e).splitlines()[0]}") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return state


def model_state_dict(state: dict) -> dict:
    """The network's parameters from a loaded state (RELION checkpoints nest them)."""
    inner = state.get("model_state_dict", state)
    return {k: v for k, v in inner.items() if isinstance(v, torch.Tensor)}
