"""Spectral trailing: the denoised reference may only hold what the data resolve.

Without it the network's detail beyond the data's resolution enters both half references alike,
the halves agree there, and the gold-standard FSC overstates the resolution.
"""
from __future__ import annotations

import torch

from ..fourier import cosine_low_pass_filter, irfft3_centered, rfft3_centered

THRESHOLD = 1 / 7
WIDTH = 3.0  # shells of the cosine edge


def trailing_shell(fsc: torch.Tensor) -> int:
    """The last shell, counting out from the origin, before the FSC (n//2+1,) first falls below 1/7."""
    below = torch.nonzero(fsc[1:] < THRESHOLD)
    return int(below[0]) if len(below) else len(fsc) - 1


def spectral_trailing(denoised: torch.Tensor, regularised: torch.Tensor, fsc: torch.Tensor,
                      denoiser_nyquist: int, fill: bool = False) -> torch.Tensor:
    """(n, n, n) denoised map low-passed with a cosine edge WIDTH shells wide, centred one shell
    below trailing_shell(fsc). Where that edge would pass the denoiser grid's Nyquist
    (`denoiser_nyquist`, in shells of this map), the edge sits below that Nyquist instead and the
    tau2-regularised map (n, n, n) fills in above it.

    With `fill` the regularised map fills in above the edge in every case (ours, not RELION 5's):
    a zero reference past the edge throws away the Wiener-weighted signal that the standard prior
    aligns with there, and the gold-standard FSC stays honest because that signal is each half's own."""
    n = denoised.shape[-1]
    centre = trailing_shell(fsc) - 1.0
    limit = denoiser_nyquist - WIDTH / 2
    keep = cosine_low_pass_filter(n, min(centre, limit), WIDTH, denoised.device)
    ft = rfft3_centered(denoised) * keep
    if fill or centre > limit:
        ft = ft + rfft3_centered(regularised.to(denoised.device)) * (1 - keep)
    return irfft3_centered(ft, n)
