"""Particle images as the E-step sees them: centred transforms at a SlicePoints list, shifted by
their current origins, with their CTFs; and the noise model's per-shell variance."""
from __future__ import annotations

import numpy as np
import torch

from .ctf import CtfParameters, compute_ctf_2d
from .fourier import phase_shift_2d, rfft2_centered, rfft_shell_index_2d, shell_sum
from .mrc import StackReader
from .particles import Particles
from .projector import SlicePoints


def image_batch(particles: Particles, rows: np.ndarray, reader: StackReader, origins: torch.Tensor,
                ctf: CtfParameters, points: SlicePoints, apix: float, device,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred transforms (B, P) of the images shifted by their current origins, and CTFs (B, P).

    origins and ctf are those of `rows` (taken once per pass: per-batch column look-ups cost O(N));
    `mask` (n, n), if given, multiplies the images first."""
    n = points.n
    images = particles.read_images(rows, reader).to(device)
    if mask is not None:
        images = images * mask.to(device)
    ft = phase_shift_2d(rfft2_centered(images), origins.to(device), n)
    return points.gather(ft), points.gather(compute_ctf_2d(ctf.to(device), n, apix))


def initial_sigma2(particles: Particles, n: int, sample: int = 500) -> torch.Tensor:
    """(n//2+1,) noise power per shell from the images' mean power spectrum (signal is small)."""
    rows = np.linspace(0, len(particles) - 1, min(sample, len(particles))).astype(int)
    ft = rfft2_centered(particles.read_images(rows))
    shells = rfft_shell_index_2d(n)
    w = torch.where(torch.arange(n // 2 + 1) == 0, 0.5, 1.0).expand(n, n // 2 + 1)
    power = shell_sum((w * ft.abs() ** 2).mean(0), shells, n // 2 + 1)
    return power / shell_sum(w, shells, n // 2 + 1).clamp(min=1e-9)


def noise_weighted_points(n: int, r_max: int, sigma2: torch.Tensor, device
                          ) -> tuple[SlicePoints, torch.Tensor, torch.Tensor]:
    """The E-step's rfft points within r_max, their shells (P,) and weights (P,): the Hermitian
    weight over the noise variance of the point's shell."""
    points = SlicePoints.within(n, r_max, device)
    shells = torch.round(points.coords.norm(dim=1)).long()
    return points, shells, points.weight / sigma2.to(device)[shells]


def residual_power(residual: torch.Tensor, points: SlicePoints, shells: torch.Tensor, n: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) complex residuals -> per-shell sums (n//2+1,) of w |r|^2 and of w (float64), whose
    ratio, summed over batches, is the noise variance sigma2."""
    sums = torch.bincount(shells, weights=(points.weight * residual.abs() ** 2).sum(0).double(),
                          minlength=n // 2 + 1)[: n // 2 + 1]
    counts = len(residual) * torch.bincount(shells, weights=points.weight.double(), minlength=n // 2 + 1)[: n // 2 + 1]
    return sums, counts
