"""The denoiser's two input channels, as RELION 5's Blush prepares them."""
from __future__ import annotations

import torch

from ..fourier import irfft3_centered, rfft3_centered, rfft_frequencies_3d


def gaussian_blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """(n, n, n) -> the map convolved with a Gaussian of `sigma` voxels (periodic, via FFT)."""
    n = volume.shape[-1]
    kz, ky, kx = rfft_frequencies_3d(n, volume.device)
    k2 = (kz**2 + ky**2 + kx**2) / n**2
    return irfft3_centered(rfft3_centered(volume) * torch.exp(-2 * torch.pi**2 * sigma**2 * k2), n)


def standardise(volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, n, n) -> (the map less its mean over its std, the mean, the std): the units the
    denoiser works in, and how to undo them."""
    mean = volume.mean()
    std = (volume - mean).std().clamp(min=1e-12)
    return (volume - mean) / std, mean, std


def denoiser_inputs(volume: torch.Tensor, mask: torch.Tensor, sigma: float = 4.7) -> torch.Tensor:
    """(n, n, n) map and soft mask -> (2, n, n, n): the standardised map, and its local standard
    deviation (Gaussian window of `sigma` voxels) over its mean; both times the mask."""
    normalised = standardise(volume)[0]
    local_mean = gaussian_blur(normalised, sigma)
    local_std = (gaussian_blur(normalised**2, sigma) - local_mean**2).clamp(min=0).sqrt()
    local_std = local_std / local_std.mean().clamp(min=1e-12)
    return torch.stack([normalised * mask, local_std * mask])
