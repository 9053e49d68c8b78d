"""Loading denoiser weights without ever running code from the file, and without letting the file
take more memory than a denoiser needs.

Ours are safetensors. RELION's `blush_v1.0.ckpt(.gz)` is a torch checkpoint (a dict with
model_state_dict, voxel_size, block_size and the model's source): it is read with
`torch.load(weights_only=True)`, which refuses any pickled object that is not a tensor or a
plain container, and its source code is never executed. A sha256 is checked when given (the
caller's, else $BLUSH_WEIGHTS_SHA256: the channel for programs whose command line RELION or
Scipion writes).

A file's bytes, a .gz's decompressed bytes and a torch zip's records are capped at MAX_BYTES, read
as streams; the metadata (voxel size, block size, shape) is range-checked before the network or
its working grid is allocated; non-finite weights are refused.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import re
import zipfile
import zlib
from pathlib import Path

import torch

from .model import LAYOUTS

# above the largest network LIMITS allow (243 MiB; RELION's v1.0: 50 MiB), far below what a file
# could ask of a machine
MAX_BYTES = 256 << 20
SHA256_VARIABLE = "BLUSH_WEIGHTS_SHA256"
# metadata a denoiser may carry: (type, smallest, largest). Past these the network or its working
# grid would not fit any machine (a width of 10^6, a voxel size of 10^-6 A), or it is not a denoiser.
LIMITS = {
    "depth": (int, 1, 7),
    "width": (int, 1, 256),
    "dim": (int, 2, 3),
    "block_size": (int, 8, 128),
    "voxel_size": (float, 0.2, 50.0),
    "voxel_size_max": (float, 0.2, 50.0),
}


class WeightsError(ValueError):
    """Weights that cannot be used, with the file named in the message."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expected_sha256(sha256: str | None) -> str | None:
    """The sha256 weights must have: the caller's, else $BLUSH_WEIGHTS_SHA256, else none."""
    text = (sha256 or os.environ.get(SHA256_VARIABLE) or "").strip().lower() or None
    if text is not None and not re.fullmatch(r"[0-9a-f]{64}", text):
        raise WeightsError(
            f"sha256 {text!r} (--weights-sha256 or ${SHA256_VARIABLE}): not 64 hexadecimal digits"
        )
    return text


def load_state(path: str | os.PathLike, sha256: str | None = None) -> dict:
    """Tensors (and plain values) of a weights file: .safetensors, or a torch checkpoint
    (.ckpt/.pt, optionally gzipped) read without unpickling code."""
    path = str(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise WeightsError(
            f"{path}: {size / 2**20:.0f} MiB, more than any denoiser's weights "
            f"({MAX_BYTES >> 20} MiB at most)"
        )
    sha256 = expected_sha256(sha256)
    if sha256 is not None:
        found = sha256_of(path)
        if found != sha256:
            raise WeightsError(f"{path}: sha256 {found} does not match the expected {sha256}")
    if path.endswith(".safetensors"):
        return _safetensors_state(path)
    raw = _gunzip(path) if path.endswith(".gz") else Path(path).read_bytes()
    _check_zip_records(path, raw)
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as e:
        raise WeightsError(
            f"{path}: refused, the checkpoint holds pickled objects other than tensors "
            f"(it could run code when loaded): {str(e).splitlines()[0]}"
        ) from e
    except (EOFError, ValueError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path}: not a torch checkpoint ({why})") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    checked_metadata(path, {k: v for k, v in state.items() if not isinstance(v, (dict, torch.Tensor))})
    return state


def _safetensors_state(path: str) -> dict:
    """A safetensors file's tensors, its metadata checked first (the header alone is read for it)."""
    from safetensors.torch import load_file

    checked_metadata(path, safetensors_metadata(path))
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise WeightsError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from e


def safetensors_metadata(path: str | os.PathLike) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from e


def _gunzip(path: str) -> bytes:
    """A .gz file's content, decompressed as a stream and refused once it passes MAX_BYTES (a few
    MB of gzip can expand to many GB)."""
    out = io.BytesIO()
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                out.write(chunk)
                if out.tell() > MAX_BYTES:
                    raise WeightsError(
                        f"{path}: decompresses to more than {MAX_BYTES >> 20} MiB, more than "
                        "any denoiser's weights: refused"
                    )
    except (OSError, EOFError, zlib.error) as e:
        raise WeightsError(f"{path}: not a readable gzip file ({e})") from e
    return out.getvalue()


def _check_zip_records(path: str, raw: bytes) -> None:
    """torch writes its zip checkpoints uncompressed; a compressed record could expand past any
    cap inside torch's reader, so only stored records are accepted."""
    if not raw.startswith(b"PK"):
        return  # torch's legacy format: tensors are stored as they are, no larger than the file
    try:
        records = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{path}: not a torch checkpoint ({e})") from e
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise WeightsError(
            f"{path}: compressed records ({packed[0]}) in a torch checkpoint (torch stores "
            "them plain): refused"
        )


def checked_metadata(path: str | os.PathLike, meta: dict) -> dict:
    """`meta` with the known fields as numbers of their type, or WeightsError naming the first out
    of its range. Unknown fields pass as they are."""
    out = dict(meta)
    for key, (kind, low, high) in LIMITS.items():
        if key not in meta:
            continue
        value = meta[key]
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        whole = kind is float or (math.isfinite(number) and number == int(number))
        if not (math.isfinite(number) and low <= number <= high and whole):
            words = "whole number" if kind is int else "number"
            raise WeightsError(f"{path}: metadata {key} is {value!r}, not a {words} in [{low:g}, {high:g}]")
        out[key] = kind(number)
    if "layout" in meta and meta["layout"] not in LAYOUTS:
        raise WeightsError(f"{path}: metadata layout is {meta['layout']!r}, not one of {', '.join(LAYOUTS)}")
    if out.get("voxel_size_max", math.inf) < out.get("voxel_size", 0):
        raise WeightsError(
            f"{path}: metadata voxel_size_max {out['voxel_size_max']:g} is below voxel_size "
            f"{out['voxel_size']:g}"
        )
    return out


def check_finite(path: str | os.PathLike, params: dict) -> None:
    """Refuse weights with NaN or infinite values: every map they touch would be NaN."""
    for name, tensor in params.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{path}: tensor {name} holds NaN or infinite values")


def model_state_dict(state: dict) -> dict:
    """The network's parameters from a loaded state (RELION checkpoints nest them)."""
    inner = state.get("model_state_dict", state)
    return {k: v for k, v in inner.items() if isinstance(v, torch.Tensor)}
