"""Fourier shell correlation, resolution at a threshold, phase-randomised mask correction."""

from __future__ import annotations

from typing import TypedDict

import torch

from .fourier import (
    irfft3_centered,
    rfft3_centered,
    rfft_hermitian_weight,
    rfft_shell_index,
    rfft_shell_index_3d,
    rfftn_centered,
    shell_sum,
)


def fourier_shell_correlation(a: torch.Tensor, b: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """(n, n, n) x (n, n, n) -> (n//2+1,) FSC per shell (shell k: frequency k / (n pixel)).
    Two (n, n) images give their Fourier ring correlation the same way; with `dim` given, leading
    axes are a batch: (..., n, n, n) x (..., n, n, n) -> (..., n//2+1) for dim = 3."""
    if a.shape != b.shape:
        raise ValueError(f"FSC needs maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n, dim = a.shape[-1], dim or a.dim()
    fa, fb = rfftn_centered(a.double(), dim), rfftn_centered(b.double(), dim)
    shells = rfft_shell_index(n, dim, a.device)
    w = rfft_hermitian_weight(n, dim, a.device).double().expand_as(shells)
    n_shells = n // 2 + 1
    cross = shell_sum(w * (fa * fb.conj()).real, shells, n_shells)
    power = shell_sum(w * fa.abs() ** 2, shells, n_shells) * shell_sum(w * fb.abs() ** 2, shells, n_shells)
    return (cross / power.sqrt().clamp(min=1e-30)).float()


def shell_resolutions(n: int, pixel_size: float) -> torch.Tensor:
    """(n//2+1,) resolution in A of each shell (inf at shell 0)."""
    k = torch.arange(n // 2 + 1, dtype=torch.float32)
    return n * pixel_size / k


def resolution_at(fsc: torch.Tensor, threshold: float, n: int, pixel_size: float) -> float:
    """Resolution (A) where the FSC first falls below `threshold`, interpolated between shells.

    Returns Nyquist (2 x pixel size) when it never falls below, inf when shell 1 is already below.
    """
    below = torch.nonzero(fsc[1:] < threshold).flatten()
    if len(below) == 0:
        return 2 * pixel_size
    i = int(below[0]) + 1  # first shell below
    if i == 1:
        return float("inf")
    f0, f1 = float(fsc[i - 1]), float(fsc[i])
    k = (i - 1) + (f0 - threshold) / (f0 - f1)  # linear between shells
    return n * pixel_size / k


def randomize_phases_beyond(volume: torch.Tensor, shell: int, generator: torch.Generator) -> torch.Tensor:
    """(n, n, n) -> the same map with uniformly random phases in shells > `shell`."""
    n = volume.shape[-1]
    ft = rfft3_centered(volume)
    # phases of white noise: uniform, and Hermitian where the half transform needs it (kx = 0)
    noise = rfft3_centered(torch.randn(volume.shape, generator=generator).to(volume.device, volume.dtype))
    randomized = torch.polar(ft.abs(), ft.angle() + noise.angle())
    ft = torch.where(rfft_shell_index_3d(n, volume.device) > shell, randomized, ft)
    return irfft3_centered(ft, n)


class MaskCorrectedFsc(TypedDict):
    """mask_corrected_fsc's curves, (n//2+1,) each, and the shell past which phases were randomised."""

    unmasked: torch.Tensor
    masked: torch.Tensor
    random_masked: torch.Tensor
    corrected: torch.Tensor
    randomize_from_shell: int


def mask_corrected_fsc(
    half1: torch.Tensor, half2: torch.Tensor, mask: torch.Tensor, randomize_below: float = 0.8, seed: int = 0
) -> MaskCorrectedFsc:
    """FSC of masked half maps corrected for the mask's own correlation (Chen et al. 2013).

    Phases are randomised beyond the first shell where the unmasked FSC drops below
    `randomize_below`; from two shells past it on, FSC_true = (FSC_masked - FSC_random) / (1 - FSC_random),
    as RELION's postprocessing does. Returns the curves and the randomisation shell.
    """
    unmasked = fourier_shell_correlation(half1, half2)
    masked = fourier_shell_correlation(half1 * mask, half2 * mask)
    below = torch.nonzero(unmasked[1:] < randomize_below).flatten()
    start = int(below[0]) + 1 if len(below) else len(unmasked) - 1
    g = torch.Generator().manual_seed(seed)
    random = fourier_shell_correlation(
        randomize_phases_beyond(half1, start, g) * mask, randomize_phases_beyond(half2, start, g) * mask
    )
    return {
        "unmasked": unmasked,
        "masked": masked,
        "random_masked": random,
        "corrected": correct_masked_fsc(masked, random, start),
        "randomize_from_shell": start,
    }


def correct_masked_fsc(masked: torch.Tensor, random: torch.Tensor, start: int) -> torch.Tensor:
    """(..., S) masked FSC and that of the maps with phases randomised past shell `start` -> (..., S)
    (FSC_masked - FSC_random) / (1 - FSC_random) from shell start + 2 on, the masked FSC below
    (RELION's rule: the shells next to the randomisation edge carry its artefacts)."""
    tail = torch.arange(masked.shape[-1], device=masked.device) >= start + 2
    return torch.where(tail, (masked - random) / (1 - random).clamp(min=1e-6), masked)


def last_ssnr_shell(ssnr: torch.Tensor) -> torch.Tensor:
    """(K, S) -> (K,) the last shell, counting out from 1, before the SSNR first drops below 1."""
    below = (ssnr[:, 1:] < 1).float()
    first = torch.where(below.any(1), below.argmax(1), torch.full((len(ssnr),), ssnr.shape[1] - 1))
    return first
