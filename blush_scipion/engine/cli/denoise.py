"""Blush denoising of a refinement's half maps: their average, denoised by the U-Net block by
block and low-passed at the half maps' FSC = 1/7 shell (spectral trailing), so the result holds
no detail the data do not support. Writes MAP and MAP's stem + .json (FSC, trailing shell, time)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..blush.denoiser import load_denoiser
from ..blush.prior import blush_reference
from ..blush.trailing import trailing_shell
from ..fourier import irfft3_centered, rfft3_centered, rfft_shell_index_3d
from ..fsc import fourier_shell_correlation, resolution_at
from ..mrc import read_map_pair, write_map
from ..reconstruct import ssnr_from_half_fsc
from .maps import add_half_maps, add_weights
from .options import count, positive


def add_args(p):
    add_half_maps(p, "denoised map to write (.mrc)")
    add_weights(p)
    p.add_argument("--diameter", type=positive, help="particle diameter, A (default: 90%% of the box)")
    p.add_argument(
        "--skip-spectral-trailing", action="store_true", help="keep the denoiser's output at all resolutions"
    )
    p.add_argument("--stride", type=count, help="voxels between blocks (default: half a block)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (%(default)s)")


def fsc_weighted(volume: torch.Tensor, fsc: torch.Tensor) -> torch.Tensor:
    """The average of two half maps weighted per shell by sqrt(FSC_full) (Rosenthal & Henderson):
    the plain regularised map that fills in where the denoiser's grid ends."""
    n = volume.shape[-1]
    full = ssnr_from_half_fsc(fsc)
    weight = torch.cat([(full / (1 + full)).sqrt(), torch.zeros(1)])
    return irfft3_centered(rfft3_centered(volume) * weight[rfft_shell_index_3d(n).clamp(max=len(fsc))], n)


def main(args):
    t0 = time.time()
    half1, half2, apix = read_map_pair(args.half1, args.half2)
    n = half1.shape[-1]
    fsc = fourier_shell_correlation(half1, half2)
    average = (half1 + half2) / 2
    denoiser = load_denoiser(args.weights, args.device, sha256=args.weights_sha256)
    diameter = args.diameter or 0.9 * n * apix
    denoised = blush_reference(
        average,
        fsc_weighted(average, fsc),
        fsc,
        denoiser,
        apix,
        diameter,
        trailing=not args.skip_spectral_trailing,
        stride=args.stride,
    )
    write_map(args.out, denoised, apix)
    record = {
        "half1": args.half1,
        "half2": args.half2,
        "out": args.out,
        "weights": denoiser.source,
        "pixel_size": apix,
        "box": n,
        "resolution_0143": resolution_at(fsc, 0.143, n, apix),
        "trailing_shell": None if args.skip_spectral_trailing else trailing_shell(fsc),
        "fsc": [round(float(x), 5) for x in fsc],
        "seconds": round(time.time() - t0, 2),
    }
    with atomic_path(Path(args.out).with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    print(
        f"denoised {args.half1} + {args.half2} ({n} px, {apix:.3f} A; half maps at "
        f"{record['resolution_0143']:.2f} A) -> {args.out} in {record['seconds']:.1f} s"
    )
