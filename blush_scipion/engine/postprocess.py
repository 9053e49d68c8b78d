"""Post-processing of two half maps, as relion_postprocess: solvent mask, mask-corrected FSC, FSC
weighting (Rosenthal & Henderson 2003), Guinier B-factor, sharpening and low-pass.

Conventions (RELION's): the B-factor is the one applied, amplitudes times exp(-B s^2 / 4), so a
sharpening B-factor is negative; the final resolution is the last shell before the corrected FSC
first falls below 0.143 (no interpolation), so rlnFinalResolution reads the same as RELION's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fourier import (
    cosine_low_pass,
    irfft3_centered,
    low_pass,
    rfft3_centered,
    rfft_hermitian_weight_3d,
    rfft_radius,
    rfft_shell_index_3d,
    shell_sum,
)
from .fsc import mask_corrected_fsc
from .mask import threshold_mask

MASK_LOW_PASS = 15.0  # A: RELION's mask-creation job low-passes the map here before thresholding
NOISE_SIGMAS = 6.0  # automatic threshold: this many noise standard deviations above the solvent
PEAK_FRACTION = 0.1  # ... and at least this fraction of the way from the solvent to the peak


@dataclass
class GuinierFit:
    """ln(mean |F| per shell) against 1/d^2 and the straight line fitted through part of it."""

    resolution_squared: torch.Tensor  # (n//2,) 1/A^2 of shells 1 .. n/2
    original: torch.Tensor  # (n//2,) ln amplitudes of the half maps' average
    weighted: torch.Tensor  # (n//2,) after FSC weighting
    sharpened: torch.Tensor  # (n//2,) after FSC weighting and the B-factor
    slope: float  # A^2; B-factor = 4 x slope
    intercept: float
    correlation: float  # squared correlation coefficient of the fit (RELION's)


@dataclass
class PostprocessResult:
    sharpened: torch.Tensor  # (n, n, n) FSC-weighted, sharpened, low-passed average, unmasked
    mask: torch.Tensor  # (n, n, n) soft solvent mask in [0, 1]
    fsc_unmasked: torch.Tensor  # (n//2+1,) per shell
    fsc_masked: torch.Tensor
    fsc_random_masked: torch.Tensor  # masked FSC of the maps with phases randomised past randomize_from_shell
    fsc_corrected: torch.Tensor  # rlnFourierShellCorrelationCorrected: what the resolution is read from
    randomize_from_shell: int
    resolution: float  # A, at FSC_corrected = 0.143
    bfactor: float  # A^2 applied (negative sharpens)
    low_pass: float  # A, the low-pass applied last
    guinier: GuinierFit
    mask_used: bool  # False when the unmasked FSC reaches further (RELION then ignores the mask)


def automatic_mask_threshold(average: torch.Tensor, noise: torch.Tensor) -> float:
    """Density threshold for a solvent mask of the (n, n, n) half maps' average, given it and their
    half-difference (pure noise with the average's power), both low-passed at MASK_LOW_PASS: the
    solvent level (the median, as most of a box is solvent) plus the larger of NOISE_SIGMAS noise
    standard deviations and PEAK_FRACTION of the highest density's height above the solvent."""
    solvent = float(average.median())
    peak = float(torch.quantile(average.flatten()[::7], 0.999))  # robust against a few hot voxels
    return solvent + max(NOISE_SIGMAS * float(noise.std()), PEAK_FRACTION * (peak - solvent))


def automatic_mask(
    half1: torch.Tensor,
    half2: torch.Tensor,
    pixel_size: float,
    threshold: float | None = None,
    extend: float = 3.0,
    soft_edge: float = 6.0,
) -> tuple[torch.Tensor, float]:
    """(n, n, n) x 2 -> ((n, n, n) soft mask, threshold used), as relion_mask_create on the average
    low-passed at MASK_LOW_PASS with --ini_threshold, --extend_inimask and --width_soft_edge
    (voxels). The threshold defaults to automatic_mask_threshold."""
    resolution = max(MASK_LOW_PASS, 2.5 * pixel_size)
    average = low_pass((half1 + half2) / 2, resolution, pixel_size)
    if threshold is None:
        threshold = automatic_mask_threshold(average, low_pass((half1 - half2) / 2, resolution, pixel_size))
    return threshold_mask(average, threshold, extend, soft_edge), threshold


def last_shell_above(fsc: torch.Tensor, threshold: float = 0.143) -> torch.Tensor:
    """(..., S) -> (...,) long: the last shell before the curve first falls below `threshold`
    (0 when shell 1 does, S - 1 when it never does)."""
    below = fsc[..., 1:] < threshold
    return torch.where(
        below.any(-1),
        below.long().argmax(-1),
        torch.full_like(below[..., 0], fsc.shape[-1] - 1, dtype=torch.long),
    )


def fsc_weights(fsc: torch.Tensor) -> torch.Tensor:
    """(..., S) FSC -> (..., S) Rosenthal & Henderson's sqrt(2 FSC / (1 + FSC)), zero from the first
    shell where the FSC falls below 1e-4 on (RELION's cut: nothing past the signal's end survives)."""
    f = fsc.clamp(min=0)
    ended = (fsc < 1e-4).long().cumsum(-1) > 0
    return torch.where(ended, torch.zeros_like(f), (2 * f / (1 + f)).sqrt())


def filter_by_shell(ft: torch.Tensor, per_shell: torch.Tensor) -> torch.Tensor:
    """(..., n, n, n//2+1) centred rfft3 x (..., S) -> the transform times each coefficient's
    shell's value, zero past shell S - 1."""
    n = ft.shape[-3]
    table = torch.cat(
        [per_shell.to(ft.real.dtype), torch.zeros_like(per_shell[..., :1], dtype=ft.real.dtype)], -1
    )
    shells = rfft_shell_index_3d(n, ft.device).clamp(max=per_shell.shape[-1])
    return ft * table[..., shells]


def apply_bfactor(ft: torch.Tensor, bfactor: float, pixel_size: float) -> torch.Tensor:
    """(n, n, n//2+1) centred rfft3 -> times exp(-B s^2 / 4) up to Nyquist, zero beyond (RELION's)."""
    n = ft.shape[-3]
    s = rfft_radius(n, 3, ft.device) / (n * pixel_size)
    gain = torch.exp(-bfactor / 4 * s**2) * (s <= 1 / (2 * pixel_size))
    return ft * gain


def log_shell_amplitudes(ft: torch.Tensor) -> torch.Tensor:
    """(n, n, n//2+1) centred rfft3 -> (n//2,) ln(mean |F|) of shells 1 .. n/2 (-99 where empty, as
    RELION marks a shell with no amplitude)."""
    n = ft.shape[-3]
    shells = rfft_shell_index_3d(n, ft.device)
    w = rfft_hermitian_weight_3d(n, ft.device).double().expand_as(shells)
    sums = shell_sum(w * ft.abs().double(), shells, n // 2 + 1)[1:]
    counts = shell_sum(w, shells, n // 2 + 1)[1:]
    mean = sums / counts.clamp(min=1)
    return torch.where(mean > 0, mean.clamp(min=1e-300).log(), torch.full_like(mean, -99.0))


def fit_guinier(
    resolution_squared: torch.Tensor, log_amplitudes: torch.Tensor, low: float, high: float
) -> tuple[float, float, float]:
    """Least-squares line through the Guinier points with resolution between `low` and `high` A
    (low > high) -> (slope, intercept, squared correlation); RELION's fitStraightLine."""
    d = resolution_squared.rsqrt()
    use = (d <= low) & (d >= high) & (log_amplitudes > -99)
    if int(use.sum()) < 2:
        raise ValueError(
            f"the B-factor fit between {low:.1f} and {high:.1f} A has fewer than two shells; "
            "give --bfactor, or a lower --autob-lowres"
        )
    x, y = resolution_squared[use].double(), log_amplitudes[use].double()
    sxx, syy, sxy = (
        ((x - x.mean()) ** 2).sum(),
        ((y - y.mean()) ** 2).sum(),
        ((x - x.mean()) * (y - y.mean())).sum(),
    )
    slope = float(sxy / sxx)
    return slope, float(y.mean() - slope * x.mean()), float(sxy**2 / (sxx * syy))


def postprocess_half_maps(
    half1: torch.Tensor,
    half2: torch.Tensor,
    mask: torch.Tensor,
    pixel_size: float,
    bfactor: float | None = None,
    low_pass_resolution: float | None = None,
    autob_lowres: float = 10.0,
    autob_highres: float | None = None,
    seed: int = 0,
) -> PostprocessResult:
    """relion_postprocess on (n, n, n) half maps with a (n, n, n) soft mask.

    bfactor: applied as given (A^2, negative sharpens); None fits it (--autob) on the FSC-weighted
    average between `autob_lowres` and `autob_highres` A (None: the final resolution; 0: as far as
    the FSC weighting reaches, RELION 3.1's default). low_pass_resolution: None low-passes at the
    final resolution, 0 not at all.
    """
    n = half1.shape[-1]
    curves = mask_corrected_fsc(half1, half2, mask, seed=seed)
    corrected, unmasked = curves["corrected"], curves["unmasked"]
    shell = int(last_shell_above(corrected))
    mask_used = int(last_shell_above(unmasked)) <= shell
    if not mask_used:  # RELION's check: a mask that loses resolution is a bad mask, not a finding
        corrected, shell = unmasked, int(last_shell_above(unmasked))
    resolution = n * pixel_size / shell if shell > 0 else float("inf")

    ft = rfft3_centered(((half1 + half2) / 2).double())
    resolution_squared = (torch.arange(1, n // 2 + 1, dtype=torch.float64) / (n * pixel_size)) ** 2
    original = log_shell_amplitudes(ft)
    ft = filter_by_shell(ft, fsc_weights(corrected.double()))
    weighted = log_shell_amplitudes(ft)
    slope = intercept = correlation = 0.0
    if bfactor is None:
        high = resolution if autob_highres is None else autob_highres
        slope, intercept, correlation = fit_guinier(resolution_squared, weighted, autob_lowres, high)
        bfactor = 4 * slope
    ft = apply_bfactor(ft, bfactor, pixel_size)
    sharpened_log = log_shell_amplitudes(ft)
    applied = resolution if low_pass_resolution is None else low_pass_resolution
    volume = irfft3_centered(ft, n)
    if applied:  # RELION's filter: a raised cosine from one shell below to one above the cut
        volume = cosine_low_pass(volume, round(n * pixel_size / applied), 2.0)
    guinier = GuinierFit(resolution_squared, original, weighted, sharpened_log, slope, intercept, correlation)
    return PostprocessResult(
        sharpened=volume.float(),
        mask=mask,
        fsc_unmasked=curves["unmasked"],
        fsc_masked=curves["masked"],
        fsc_random_masked=curves["random_masked"],
        fsc_corrected=corrected,
        randomize_from_shell=curves["randomize_from_shell"],
        resolution=resolution,
        bfactor=bfactor,
        low_pass=applied,
        guinier=guinier,
        mask_used=mask_used,
    )
