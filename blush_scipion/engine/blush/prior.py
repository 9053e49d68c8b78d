"""Blush as a refinement's prior: a half set's next reference from this iteration's data.

The denoiser sees the nearly unregularised reconstruction (data over weight plus 0.001 of the
weight's shell mean, gridding-corrected), and its output, trailed to the gold-standard FSC,
replaces the tau2-regularised map as the reference. The FSC always comes from the raw halves.
"""

from __future__ import annotations

import torch

from .denoiser import Denoiser, denoise_map
from .trailing import spectral_trailing


def blush_reference(
    unregularised: torch.Tensor,
    regularised: torch.Tensor,
    fsc: torch.Tensor,
    denoiser: Denoiser,
    pixel_size: float,
    diameter: float,
    *,
    trailing: bool = True,
    stride: int | None = None,
    fill: bool = False,
) -> torch.Tensor:
    """(n, n, n) unregularised and tau2-regularised maps of one half set and the half sets'
    FSC (n//2+1,) -> the (n, n, n) reference Blush proposes for that half.

    Without `trailing` the denoised map is returned as it is (as in 3D classification); `fill`: see
    spectral_trailing."""
    denoised, nyquist = denoise_map(unregularised, pixel_size, denoiser, diameter, stride=stride)
    if not trailing:
        return denoised
    return spectral_trailing(denoised, regularised, fsc, nyquist, fill=fill)
