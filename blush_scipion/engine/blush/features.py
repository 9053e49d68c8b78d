"""The denoiser's two input channels, as RELION 5's Blush prepares them."""

from __future__ import annotations

import torch

from ..fourier import irfftn_centered, rfft_radius, rfftn_centered


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(n, n, n) map or (n, n) image -> convolved with a Gaussian of `sigma` voxels (periodic, via FFT)."""
    n, dim = x.shape[-1], x.dim()
    k2 = (rfft_radius(n, dim, x.device) / n) ** 2
    return irfftn_centered(rfftn_centered(x, dim) * torch.exp(-2 * torch.pi**2 * sigma**2 * k2), n, dim)


def standardise(volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, n, n) or (n, n) -> (the map less its mean over its std, the mean, the std): the units the
    denoiser works in, and how to undo them."""
    mean = volume.mean()
    std = (volume - mean).std().clamp(min=1e-12)
    return (volume - mean) / std, mean, std


def denoiser_inputs(volume: torch.Tensor, mask: torch.Tensor, sigma: float = 4.7) -> torch.Tensor:
    """(n, n, n) map (or (n, n) image) and soft mask -> (2, n, n, n) (or (2, n, n)): the standardised map,
    and its local standard
    deviation (Gaussian window of `sigma` voxels) over its mean; both times the mask."""
    normalised = standardise(volume)[0]
    local_mean = gaussian_blur(normalised, sigma)
    local_std = (gaussian_blur(normalised**2, sigma) - local_mean**2).clamp(min=0).sqrt()
    local_std = local_std / local_std.mean().clamp(min=1e-12)
    return torch.stack([normalised * mask, local_std * mask])
