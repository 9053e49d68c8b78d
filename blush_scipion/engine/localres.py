"""Local resolution from a sliding-window FSC of two half maps (RELION's relion_postprocess --locres):
soft spherical windows on a grid of centres, each window's phase-randomisation-corrected FSC read at
0.143, and the windows' answers blended voxel by voxel with the windows as weights. The same blend of
the half maps' average, FSC-weighted and low-passed window by window, gives the locally filtered map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import ndimage

from .fourier import irfft3_centered, rfft3_centered, rfft_radius
from .fsc import correct_masked_fsc, fourier_shell_correlation, randomize_phases_beyond
from .mask import raised_cosine
from .postprocess import apply_bfactor, filter_by_shell, fsc_weights, last_shell_above


@dataclass
class LocalResolution:
    resolution: torch.Tensor  # (n, n, n) A; 0 where no window reaches
    filtered: torch.Tensor  # (n, n, n) the half maps' average, FSC-weighted and low-passed locally
    centres: torch.Tensor  # (W, 3) window centres, voxels from the box centre, (z, y, x)
    window_resolution: torch.Tensor  # (W,) A


def window_centres(
    n: int, step: int, radius: int, near: torch.Tensor | None = None, reach: float = 0.0
) -> torch.Tensor:
    """(W, 3) grid points `step` voxels apart, from -n/2 on as RELION's, within n/2 - radius of the
    centre (the window stays in the box); with a (n, n, n) `near` mask, only those within `reach`
    voxels of it (a window further off touches no voxel of the mask)."""
    axis = torch.arange(-(n // 2), n - n // 2, step)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[grid.float().norm(dim=-1) < n / 2 - radius]
    if near is not None:
        distance = ndimage.distance_transform_edt(~(near > 0.01).cpu().numpy())
        index = (grid + n // 2).numpy()
        grid = grid[torch.from_numpy(distance[index[:, 0], index[:, 1], index[:, 2]] < reach)]
    return grid


def spherical_windows(n: int, centres: torch.Tensor, radius: float, edge: float) -> torch.Tensor:
    """(B, 3) centres (voxels from the box centre) -> (B, n, n, n) soft spheres of `radius` voxels
    with a raised-cosine edge `edge` voxels wide."""
    k = torch.arange(n, dtype=torch.float32) - n // 2
    c = centres.float()
    d2 = (
        (k[None, :, None, None] - c[:, 0, None, None, None]) ** 2
        + (k[None, None, :, None] - c[:, 1, None, None, None]) ** 2
        + (k[None, None, None, :] - c[:, 2, None, None, None]) ** 2
    )
    return raised_cosine(d2.sqrt() - radius, edge)


def local_resolution(
    half1: torch.Tensor,
    half2: torch.Tensor,
    pixel_size: float,
    sampling: float = 25.0,
    radius: float | None = None,
    edge: float | None = None,
    randomize_at: float = 25.0,
    min_resolution: float = 50.0,
    bfactor: float = 0.0,
    mask: torch.Tensor | None = None,
    batch: int = 8,
    seed: int = 0,
) -> LocalResolution:
    """Local resolution of (n, n, n) half maps, RELION's --locres with its defaults (all in A):
    windows every `sampling`, of `radius` (sampling / 2) with an `edge` (sampling) soft edge, phases
    randomised past `randomize_at`, no window coarser than `min_resolution`; the filtered map is
    sharpened by `bfactor` first. With a (n, n, n) `mask`, only windows that touch it are computed
    (the answer inside the mask is the same). Windows go through the FFTs `batch` at a time."""
    n = half1.shape[-1]
    step = max(1, round(sampling / pixel_size))
    radius_px = round((radius or sampling / 2) / pixel_size)
    edge_px = round((edge or sampling) / pixel_size)
    centres = window_centres(n, step, radius_px, near=mask, reach=radius_px + edge_px)
    if len(centres) == 0:
        raise ValueError("no window touches the mask")
    start = int(n * pixel_size / randomize_at)
    g = torch.Generator().manual_seed(seed)
    random1, random2 = randomize_phases_beyond(half1, start, g), randomize_phases_beyond(half2, start, g)
    average_ft = apply_bfactor(rfft3_centered(((half1 + half2) / 2).double()), bfactor, pixel_size)
    radius_ft = rfft_radius(n, 3)
    inverse_resolution, filtered, weight = (torch.zeros(n, n, n, dtype=torch.float64) for _ in range(3))
    window_resolution = []
    for chunk in torch.split(centres, batch):
        w = spherical_windows(n, chunk, radius_px, edge_px)
        masked = fourier_shell_correlation(half1 * w, half2 * w, dim=3)
        random = fourier_shell_correlation(random1 * w, random2 * w, dim=3)
        corrected = correct_masked_fsc(masked, random, start)
        shell = last_shell_above(corrected)
        resolution = torch.where(shell > 0, n * pixel_size / shell.clamp(min=1), 999.0).clamp(
            max=min_resolution
        )
        # RELION's low-pass: a raised cosine from one shell below to one above each window's resolution
        cut = (n * pixel_size / resolution).round()[:, None, None, None]
        low_pass = 0.5 * (1 + torch.cos(torch.pi * ((radius_ft - cut + 1) / 2).clamp(0, 1)))
        local = irfft3_centered(filter_by_shell(average_ft, fsc_weights(corrected.double())) * low_pass, n)
        w = w.double()
        inverse_resolution += (w / resolution.double()[:, None, None, None]).sum(0)
        filtered += (w * local).sum(0)
        weight += w.sum(0)
        window_resolution.append(resolution)
    reached = weight > 1e-6
    safe = weight.clamp(min=1e-6)
    return LocalResolution(
        resolution=torch.where(reached, safe / inverse_resolution.clamp(min=1e-30), 0).float(),
        filtered=torch.where(reached, filtered / safe, 0).float(),
        centres=centres,
        window_resolution=torch.cat(window_resolution).float(),
    )
