"""RELION 5's Blush checkpoint (`blush_v1.0.ckpt`, Zenodo record 10072731) as plain tensors in
our BlushUNet(layout="relion").

The checkpoint is a torch-saved dict: `model_state_dict` (the network's tensors), `voxel_size`
(A, the one voxel size maps are resampled to), `block_size` (64), `no_mask` (bool) and
`model_definition` (the Python source of RELION's model class, which RELION execs). We read it
with `torch.load(weights_only=True)` (weights.load_state), ignore the source and rename the
tensors onto our own class:

    RELION                                   ours
    inc.double_conv.{conv1,norm1,conv2,norm2}  encoders.0.{0,1,3,4}
    down.{i}.double_conv.*   (i < depth-1)     encoders.{i+1}.*
    down.{depth-1}.double_conv.*               bottleneck.*
    up.{i}.conv.double_conv.*                  decoders.{i}.*
    outc.*                                     head.*

RELION's decoder concatenates [skip, up-sampled] where ours concatenates [up-sampled, skip], so
the input channels of each decoder's first convolution are reordered accordingly.

RELION publishes one sha256, that of the gzipped download (`hash_prefix` of its installer);
the decompressed `v1.0.ckpt` it installs has none: its user gives that file's sha256
(`sha256sum v1.0.ckpt`; --weights-sha256 or $BLUSH_WEIGHTS_SHA256), having checked the download.
"""

from __future__ import annotations

import os
import re

import torch

from .weights import WeightsError, sha256_of

RELION_BLUSH_V1_URL = "https://zenodo.org/records/10072731/files/blush_v1.0.ckpt.gz"
# sha256 of blush_v1.0.ckpt.gz as downloaded (not of the decompressed .ckpt).
RELION_BLUSH_V1_SHA256 = "6e42a7d80231418bb77170619eeedf67b59be84078972a25a39fc3b82cd9c34e"

_PARTS = {"conv1": "0", "norm1": "1", "conv2": "3", "norm2": "4"}
_KEY = re.compile(
    r"^(?:(inc)|down\.(\d+)|up\.(\d+)\.conv)\.double_conv\.(conv1|norm1|conv2|norm2)\.(weight|bias)$"
)
_HEAD = re.compile(r"^outc\.(weight|bias)$")


def _params(state: dict) -> dict:
    inner = state.get("model_state_dict", state)
    return {k: v for k, v in inner.items() if isinstance(v, torch.Tensor)}


def is_relion_checkpoint(state: dict) -> bool:
    """Whether a loaded state (the checkpoint dict or its model_state_dict) has RELION's names."""
    params = _params(state)
    return "inc.double_conv.conv1.weight" in params and "outc.weight" in params


def relion_metadata(state: dict) -> dict:
    """depth, width and layout of the BlushUNet that takes a RELION checkpoint's tensors."""
    params = _params(state)
    downs = {int(m.group(2)) for m in map(_KEY.match, params) if m and m.group(2) is not None}
    return {
        "depth": len(downs),
        "width": int(params["inc.double_conv.conv1.weight"].shape[0]),
        "layout": "relion",
    }


def relion_state_dict(state: dict) -> dict:
    """RELION's parameters (a checkpoint dict or its model_state_dict) -> BlushUNet(layout="relion")
    parameter names and channel order. Raises ValueError on a key outside the v1.0 layout."""
    params = _params(state)
    depth = relion_metadata(params)["depth"]
    out, unknown = {}, []
    for key, value in params.items():
        m, h = _KEY.match(key), _HEAD.match(key)
        if h:
            out[f"head.{h.group(1)}"] = value
            continue
        if not m:
            unknown.append(key)
            continue
        inc, down, up, part, kind = m.groups()
        if inc:
            prefix = "encoders.0"
        elif down is not None:
            i = int(down)
            prefix = f"encoders.{i + 1}" if i < depth - 1 else "bottleneck"
        else:
            prefix = f"decoders.{int(up)}"
        out[f"{prefix}.{_PARTS[part]}.{kind}"] = value
    if unknown:
        raise ValueError(
            f"not RELION's Blush v1.0 layout (trilinear, InstanceNorm): unexpected "
            f"{', '.join(sorted(unknown)[:5])}{' ...' if len(unknown) > 5 else ''}"
        )
    for j in range(depth):  # decoder j takes the skip of encoder depth-1-j: [skip, up] -> [up, skip]
        key, skip_key = f"decoders.{j}.0.weight", f"encoders.{depth - 1 - j}.0.weight"
        if key in out and skip_key in out:
            w, skip = out[key], out[skip_key].shape[0]
            out[key] = torch.cat([w[:, skip:], w[:, :skip]], dim=1).contiguous()
    return out


def check_relion_sha256(path: str | os.PathLike, sha256: str | None) -> None:
    """A RELION checkpoint is used only after a sha256 check: the caller's `sha256` (already
    checked by load_state), else RELION's published one, which exists for the .gz download only."""
    if sha256 is not None:
        return
    path = str(path)
    if not path.endswith(".gz"):
        raise WeightsError(
            f"{path}: a RELION Blush checkpoint with no sha256 to check it against (RELION publishes "
            f"only that of the gzipped download {RELION_BLUSH_V1_URL}, {RELION_BLUSH_V1_SHA256}); "
            f"give that .ckpt.gz, or this file's sha256 (--weights-sha256, or $BLUSH_WEIGHTS_SHA256)"
        )
    found = sha256_of(path)
    if found != RELION_BLUSH_V1_SHA256:
        raise WeightsError(
            f"{path}: sha256 {found} is not that of RELION's blush_v1.0.ckpt.gz "
            f"({RELION_BLUSH_V1_SHA256}); give this file's sha256 (--weights-sha256, or "
            "$BLUSH_WEIGHTS_SHA256) to use it anyway"
        )


def relion_params(path: str | os.PathLike, state: dict, sha256: str | None = None) -> dict:
    """A loaded RELION checkpoint's tensors under our names, after the sha256 check."""
    check_relion_sha256(path, sha256)
    try:
        return relion_state_dict(state)
    except ValueError as e:
        raise WeightsError(f"{path}: {e}") from e
