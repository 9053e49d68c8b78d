"""Half-map pairs that look like a refinement's, from a known map: the denoiser's training data.

Both halves share the signal (the truth blurred by a misalignment B-factor) and carry independent
Gaussian noise whose power per shell makes their FSC follow a real-looking curve: near 1 at low
resolution, through 0.143 at the requested resolution, falling off over a realistic width. The
noise is stationary, so the solvent is as noisy as the particle, as in unmasked half maps.
The same on images (a truth projection) gives the 2D denoiser's pairs: a half map's projection
is the truth's projection plus the projection of its noise, stationary with a per-ring power.
"""

from __future__ import annotations

import math

import torch

from ..fourier import irfftn_centered, rfft_hermitian_weight, rfft_shell_index, rfftn_centered, shell_sum


def target_fsc(n: int, pixel_size: float, resolution: float, width: float = 0.15) -> torch.Tensor:
    """(n//2+1,) logistic FSC through 0.143 at `resolution` A; `width` is the fall-off in units
    of that frequency (real half-map curves drop from 0.9 to 0.1 over about 0.6 of it)."""
    s = torch.arange(n // 2 + 1, dtype=torch.float64) / (n * pixel_size)
    s0, w = 1 / resolution, width / resolution
    centre = s0 - w * math.log(1 / 0.143 - 1)  # logistic(s0) = 0.143
    return 1 / (1 + torch.exp((s - centre) / w))


def simulate_half_maps(
    truth: torch.Tensor,
    pixel_size: float,
    resolution: float,
    generator: torch.Generator,
    blur_bfactor: float = 0.0,
    width: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, n, n) truth -> two (n, n, n) half maps with their FSC following target_fsc ((n, n) images
    alike, their FRC following it).

    blur_bfactor (A^2): shared blur from misalignment, applied to the signal of both halves.
    """
    n, dim = truth.shape[-1], truth.dim()
    ft = rfftn_centered(truth.double(), dim)
    shells = rfft_shell_index(n, dim)
    s2 = (shells.double() / (n * pixel_size)) ** 2
    signal = ft * torch.exp(-blur_bfactor * s2 / 4)
    w = rfft_hermitian_weight(n, dim).double().expand_as(shells)
    n_shells = n // 2 + 1
    counts = shell_sum(w, shells, n_shells).clamp(min=1)
    power = shell_sum(w * signal.abs() ** 2, shells, n_shells) / counts
    fsc = target_fsc(n, pixel_size, resolution, width).clamp(1e-4, 1 - 1e-6)
    noise_power = power / (fsc / (1 - fsc))  # per half: FSC = SNR / (1 + SNR)
    halves = []
    for _ in range(2):
        noise = rfftn_centered(torch.randn(truth.shape, generator=generator, dtype=torch.float64), dim)
        noise_now = shell_sum(w * noise.abs() ** 2, shells, n_shells) / counts
        scale = torch.zeros(n_shells + 1, dtype=torch.float64)
        scale[:n_shells] = (noise_power / noise_now.clamp(min=1e-30)).sqrt()
        halves.append(irfftn_centered(signal + noise * scale[shells.clamp(max=n_shells)], n, dim).float())
    return halves[0], halves[1]
