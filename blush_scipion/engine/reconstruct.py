"""Wiener reconstruction from images with known poses (as relion_reconstruct, with half sets)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .ctf import compute_ctf_2d
from .device import Device
from .fourier import phase_shift_2d, rfft2_centered, rfft_hermitian_weight, shell_sum
from .fsc import fourier_shell_correlation
from .mask import soft_mask_outside_map
from .mrc import StackReader
from .particles import CTF_COLUMNS, POSE_COLUMNS, Particles
from .projector import (
    SlicePoints,
    fourier_shape,
    hermitian_symmetrize,
    insert_central_slices,
    map_from_fourier,
)
from .star import require_columns
from .symmetry import symmetry_operators


def image_slices(
    images: torch.Tensor, origins: torch.Tensor, ctf: torch.Tensor | None, points: SlicePoints
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images -> the slices a reconstruction inserts: (CTF x centred transform, CTF^2).

    images: (B, n, n); origins: (B, 2) RELION origins in pixels (applied: centres the particle);
    ctf: (B, n, n//2+1)
    or None. Returns (B, P) complex and (B, P) real on `points`, with its Hermitian weights.
    """
    ft = phase_shift_2d(rfft2_centered(images), origins, images.shape[-1])
    if ctf is None:
        weights = torch.ones(ft.shape, device=ft.device)
    else:
        ft, weights = ft * ctf, ctf**2
    return points.gather(ft) * points.weight, points.gather(weights) * points.weight


SLAB_VOXELS = 1 << 24  # voxels of a Fourier volume visited at once by the per-shell passes


def padded_shell_slabs(
    m: int, pad: float, device: Device | None = None
) -> Iterator[tuple[slice, torch.Tensor]]:
    """The shells of a fourier_shape(m) volume, slab by slab of kz planes (bounded memory at 800^3):
    yields (kz slice, (planes, m, m//2+1) long shell in units of the unpadded map's transform)."""
    ky = (torch.arange(m, device=device, dtype=torch.float32) - m // 2)[None, :, None]
    kx = torch.arange(m // 2 + 1, device=device, dtype=torch.float32)[None, None, :]
    planes = max(1, SLAB_VOXELS // (m * (m // 2 + 1)))
    for start in range(0, m, planes):
        kz = torch.arange(start, min(start + planes, m), device=device, dtype=torch.float32) - m // 2
        kz = kz[:, None, None]
        yield slice(start, start + planes), torch.round(torch.sqrt(kz**2 + ky**2 + kx**2) / pad).long()


def wiener_map(
    data: torch.Tensor,
    weight: torch.Tensor,
    n: int,
    pad: float = 2,
    ssnr: torch.Tensor | None = None,
    floor: float = 1e-3,
) -> torch.Tensor:
    """fourier_shape(m) data and weight -> (n,)*3 map: data / (weight + regulariser),
    gridding-corrected.

    The regulariser per shell is the shell's mean weight over `ssnr` (n//2+1,) (Wiener filter),
    or `floor` x the mean weight without an SSNR (nearly unregularised, as Blush's input); the
    mean counts each kx > 0 coefficient twice, for its Hermitian mate. Shells beyond n/2 (outside
    the sphere RELION reconstructs) are zeroed, and so are the box corners (soft_mask_outside_map).
    """
    m = data.shape[0]
    n_shells = n // 2 + 1  # shell n_shells: beyond the sphere
    mean_weight = shell_mean(weight, n, pad)
    inverse_ssnr = torch.full((n_shells + 1,), floor, device=data.device)
    if ssnr is not None:
        inverse_ssnr[:n_shells] = 1 / ssnr[:n_shells].to(data.device).clamp(min=1e-6)
    regulariser = (mean_weight * inverse_ssnr).clamp(min=1e-30)
    regulariser[n_shells] = float("inf")
    quotient = torch.empty_like(data)
    for planes, shells in padded_shell_slabs(m, pad, data.device):
        quotient[planes] = data[planes] / (weight[planes] + regulariser[shells.clamp(max=n_shells)])
    return soft_mask_outside_map(map_from_fourier(quotient, n, pad))


def shell_mean(values: torch.Tensor, n: int, pad: float = 2) -> torch.Tensor:
    """fourier_shape(m) real values -> (n//2+2,) their mean per shell of the unpadded map's
    transform, each kx > 0 coefficient counted twice (for its Hermitian mate); the last entry is
    beyond the sphere of radius n/2."""
    m = values.shape[0]
    n_shells = n // 2 + 1
    mates = rfft_hermitian_weight(m, 3, values.device)
    sums = torch.zeros(n_shells + 1, dtype=torch.float64, device=values.device)
    counts = torch.zeros_like(sums)
    for planes, shells in padded_shell_slabs(m, pad, values.device):
        shells = shells.clamp(max=n_shells)
        sums += shell_sum((values[planes] * mates).double(), shells, n_shells + 1)
        counts += shell_sum(mates.expand(shells.shape).double(), shells, n_shells + 1)
    return (sums / counts.clamp(min=1)).float()


def ssnr_from_half_fsc(fsc: torch.Tensor) -> torch.Tensor:
    """Full-set SSNR per shell from the half-set FSC: FSC_full = 2F/(1+F), SSNR = FSC/(1-FSC)."""
    f = fsc.clamp(1e-3, 0.999)
    return 2 * f / (1 - f)


@dataclass
class Reconstruction:
    volume: torch.Tensor  # (n, n, n) the Wiener-filtered map from all particles
    half1: torch.Tensor  # (n, n, n) unregularised half maps
    half2: torch.Tensor
    fsc: torch.Tensor  # (n//2+1,) FSC between the half maps
    pixel_size: float


def reconstruct_particles(
    particles: Particles,
    symmetry: str = "C1",
    *,
    ctf: bool = True,
    wiener: bool = True,
    pad: int = 2,
    batch_size: int = 256,
    device: Device = "cpu",
    progress: bool = False,
) -> Reconstruction:
    """Back-project every particle at its pose into its half set, then reconstruct.

    Half sets come from rlnRandomSubset (else alternating rows); the final map joins both halves
    with a Wiener filter whose SSNR comes from their FSC (plain division if not `wiener`).
    """
    n, apix = particles.image_size, particles.pixel_size
    require_columns(
        particles.table, POSE_COLUMNS, particles.source, "particles", "reconstruction needs poses"
    )
    if ctf:
        require_columns(
            particles.table, CTF_COLUMNS, particles.source, "particles", "use --no-ctf for images without CTF"
        )
    device = torch.device(device)
    m = pad * n
    points = SlicePoints.within(n, device=device)
    sym = symmetry_operators(symmetry).to(device)
    data = torch.zeros((2, *fourier_shape(m)), dtype=torch.complex64, device=device)
    weight = torch.zeros((2, *fourier_shape(m)), dtype=torch.float32, device=device)
    halves = particles.half_sets()
    all_rotations, all_origins = particles.rotations(), particles.origins()
    all_ctf = particles.ctf() if ctf else None
    reader = StackReader()
    try:
        for start in tqdm(
            range(0, len(particles), batch_size), desc="back-projecting", unit="batch", disable=not progress
        ):
            rows = np.arange(start, min(start + batch_size, len(particles)))
            images = particles.read_images(rows, reader).to(device)
            ctf_2d = compute_ctf_2d(all_ctf[rows].to(device), n, apix) if all_ctf is not None else None
            values, weights = image_slices(images, all_origins[rows].to(device), ctf_2d, points)
            rotations = all_rotations[rows].to(device)
            for h in (1, 2):
                sel = torch.as_tensor(halves[rows] == h, device=device)
                for op in sym:  # a symmetric map projects alike at A and A S
                    insert_central_slices(
                        data[h - 1],
                        weight[h - 1],
                        values[sel],
                        weights[sel],
                        rotations[sel] @ op,
                        points,
                        pad,
                    )
    finally:
        reader.close()
    for d, w in zip(data, weight):
        hermitian_symmetrize(d, w)
    half1, half2 = (wiener_map(d, w, n, pad) for d, w in zip(data, weight))
    fsc = fourier_shell_correlation(half1, half2)
    ssnr = ssnr_from_half_fsc(fsc) if wiener else None
    volume = wiener_map(data[0] + data[1], weight[0] + weight[1], n, pad, ssnr=ssnr)
    return Reconstruction(volume.cpu(), half1.cpu(), half2.cpu(), fsc.cpu(), apix)
