"""What the map commands (postprocess, localres, denoise, relion-hook) share: the half maps and
--out, the denoiser's weights, a user's mask."""

from __future__ import annotations

import torch

from ..mrc import MapError, read_map, read_map_pair


def add_half_maps(p, out_help: str) -> None:
    """--half1, --half2 (a refinement's unfiltered half maps) and --out (`out_help`)."""
    p.add_argument("--half1", required=True, help="first unfiltered half map (.mrc)")
    p.add_argument("--half2", required=True, help="second unfiltered half map (.mrc)")
    p.add_argument("--out", required=True, help=out_help)


def add_weights(p) -> None:
    """--weights and --weights-sha256: the denoiser's weights and the hash they must have."""
    p.add_argument(
        "--weights",
        help="denoiser weights (.safetensors, or RELION's blush_v1.0.ckpt[.gz]); "
        "default: the weights shipped with this package",
    )
    p.add_argument(
        "--weights-sha256",
        help="sha256 the weights must have (needed for RELION's decompressed "
        "v1.0.ckpt, whose hash RELION does not publish: `sha256sum v1.0.ckpt`; also "
        "$BLUSH_WEIGHTS_SHA256)",
    )


def read_half_maps(args) -> tuple[torch.Tensor, torch.Tensor, float]:
    """--half1 and --half2 (n, n, n) each, and their pixel size (--angpix where given, else theirs)."""
    half1, half2, apix = read_map_pair(args.half1, args.half2)
    return half1, half2, args.angpix or apix


def read_mask(path: str, shape: torch.Size) -> torch.Tensor:
    """A user's mask, checked as RELION checks it: the maps' shape, values in [0, 1]."""
    mask, _ = read_map(path)
    if mask.shape != shape:
        raise MapError(f"{path}: mask shape {tuple(mask.shape)} differs from the half maps' {tuple(shape)}")
    if float(mask.min()) < -1e-6 or float(mask.max()) > 1 + 1e-6:
        raise MapError(
            f"{path}: mask values must lie in [0, 1], found {float(mask.min()):.3g} .. "
            f"{float(mask.max()):.3g}"
        )
    return mask.clamp(0, 1)
