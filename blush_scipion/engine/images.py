"""Particle images as the E-step sees them: centred transforms at a SlicePoints list, shifted by
their current origins, with their CTFs; and the noise model: a complex variance per Fourier shell
for each optics group (as RELION 3.1 keeps one noise spectrum per optics group), shape (G, S)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .ctf import CtfParameters, compute_ctf_2d
from .device import Device
from .fourier import phase_shift_2d, rfft2_centered, rfft_shell_index_2d, shell_sum
from .mrc import StackReader
from .particles import Particles
from .projector import SlicePoints


def image_batch(
    particles: Particles,
    rows: np.ndarray,
    reader: StackReader,
    origins: torch.Tensor,
    ctf: CtfParameters,
    points: SlicePoints,
    apix: float,
    device: Device,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred transforms (B, P) of the images shifted by their current origins, and CTFs (B, P).

    origins and ctf are those of `rows` (taken once per pass: per-batch column look-ups cost O(N));
    `mask` (n, n), if given, multiplies the images first."""
    n = points.n
    images = particles.read_images(rows, reader).to(device)
    if mask is not None:
        images = images * mask.to(device)
    ft = phase_shift_2d(rfft2_centered(images), origins.to(device), n)
    return points.gather(ft), points.gather(compute_ctf_2d(ctf.to(device), n, apix))


def group_index(particles: Particles) -> np.ndarray:
    """(N,) each particle's optics group as 0 .. G-1, in order of the group numbers present."""
    numbers = particles.table["rlnOpticsGroup"].to_numpy()
    return np.searchsorted(np.unique(numbers), numbers)


def initial_radius(n: int, pixel_size: float, resolution: float, margin: int) -> int:
    """The first E-step's radius in Fourier pixels of an n px box: the shell of `resolution` (A)
    plus `margin` shells, at most n//2."""
    return min(n // 2, math.ceil(n * pixel_size / resolution) + margin)


def initial_sigma2(particles: Particles, n: int, sample: int = 500) -> torch.Tensor:
    """(G, n//2+1) noise power per shell and optics group from the images' mean power spectrum
    (their signal is small)."""
    groups = group_index(particles)
    out = []
    for g in range(groups.max() + 1):
        members = np.nonzero(groups == g)[0]
        rows = members[np.linspace(0, len(members) - 1, min(sample, len(members))).astype(int)]
        out.append(power_spectrum(particles.read_images(rows)).mean(0))
    return torch.stack(out)


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """(B, n, n) -> (B, n//2+1) mean |F|^2 per shell of each image's centred rfft2."""
    n = images.shape[-1]
    shells = rfft_shell_index_2d(n, images.device)
    w = torch.where(torch.arange(n // 2 + 1, device=images.device) == 0, 0.5, 1.0).expand(n, n // 2 + 1)
    counts = shell_sum(w, shells, n // 2 + 1).clamp(min=1e-9)
    return (
        torch.stack([shell_sum(w * f.abs() ** 2, shells, n // 2 + 1) for f in rfft2_centered(images)])
        / counts
    )


def noise_weighted_points(
    n: int, r_max: int, sigma2: torch.Tensor, device
) -> tuple[SlicePoints, torch.Tensor, torch.Tensor]:
    """The E-step's rfft points within r_max, their shells (P,) and weights (G, P): the Hermitian
    weight over the noise variance of the point's shell in each group's spectrum (G, S)."""
    points = SlicePoints.within(n, r_max, device)
    shells = torch.round(points.coords.norm(dim=1)).long()
    return points, shells, points.weight / sigma2.to(device)[:, shells]


def residual_power(
    residual: torch.Tensor,
    points: SlicePoints,
    shells: torch.Tensor,
    n: int,
    groups: torch.Tensor,
    n_groups: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) complex residuals of images in optics groups (B,) -> per group and shell sums
    (G, n//2+1) of w |r|^2 and of w (float64), whose ratio, summed over batches, is sigma2."""
    s = n // 2 + 1
    key = (groups[:, None] * (s + 1) + shells.clamp(max=s)[None, :]).flatten()
    w = points.weight.double().expand_as(residual)
    sums = torch.bincount(
        key, weights=(w * residual.abs() ** 2).flatten().double(), minlength=n_groups * (s + 1)
    )
    counts = torch.bincount(key, weights=w.flatten(), minlength=n_groups * (s + 1))
    return sums.reshape(n_groups, s + 1)[:, :s], counts.reshape(n_groups, s + 1)[:, :s]


def noise_model_blocks(sigma2, n: int, pixel_size: float) -> dict:
    """run_model.star's data_model_optics_group_N tables: RELION 3.1's noise spectrum per group."""
    shells = np.arange(n // 2 + 1)
    return {
        f"model_optics_group_{g + 1}": pd.DataFrame(
            {
                "rlnSpectralIndex": shells,
                "rlnResolution": shells / (n * pixel_size),
                "rlnSigma2Noise": np.asarray(spectrum),
            }
        )
        for g, spectrum in enumerate(sigma2)
    }
