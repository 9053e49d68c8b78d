"""Spectral trailing: the denoised reference may only hold what the data resolve.

Without it the network's detail beyond the data's resolution enters both half references alike,
the halves agree there, and the gold-standard FSC overstates the resolution.
"""

from __future__ import annotations

import torch

from ..fourier import cosine_low_pass_filter, irfftn_centered, rfftn_centered

THRESHOLD = 1 / 7
WIDTH = 3.0  # shells of the cosine edge


def trailing_shell(fsc: torch.Tensor) -> int:
    """The last shell, counting out from the origin, before the FSC (n//2+1,) first falls below 1/7."""
    below = torch.nonzero(fsc[1:] < THRESHOLD)
    return int(below[0]) if len(below) else len(fsc) - 1


def spectral_trailing(
    denoised: torch.Tensor,
    regularised: torch.Tensor,
    fsc: torch.Tensor,
    denoiser_nyquist: int,
    *,
    fill: bool = False,
) -> torch.Tensor:
    """(n, n, n) denoised map low-passed with a cosine edge WIDTH shells wide, centred one shell
    below trailing_shell(fsc). Where that edge would pass the denoiser grid's Nyquist
    (`denoiser_nyquist`, in shells of this map), the edge sits below that Nyquist instead and the
    tau2-regularised map (n, n, n) fills in above it.

    With `fill` the regularised map fills in above the edge in every case (ours, not RELION 5's):
    a zero reference past the edge throws away the Wiener-weighted signal that the standard prior
    aligns with there, and the gold-standard FSC stays honest because that signal is each half's own."""
    return trail_at(denoised, regularised, trailing_shell(fsc), denoiser_nyquist, fill=fill)


def trail_at(
    denoised: torch.Tensor,
    regularised: torch.Tensor,
    shell: int,
    denoiser_nyquist: int,
    *,
    fill: bool = False,
) -> torch.Tensor:
    """spectral_trailing with the data's last resolved `shell` given: for maps (n, n, n) and for
    images (n, n) alike (2D classification trails each class at its own resolution)."""
    n, dim = denoised.shape[-1], denoised.dim()
    centre = shell - 1.0
    limit = denoiser_nyquist - WIDTH / 2
    keep = cosine_low_pass_filter(n, min(centre, limit), WIDTH, denoised.device, dim)
    ft = rfftn_centered(denoised, dim) * keep
    if fill or centre > limit:
        ft = ft + rfftn_centered(regularised.to(denoised.device), dim) * (1 - keep)
    return irfftn_centered(ft, n, dim)
