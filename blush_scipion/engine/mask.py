"""Soft masks: spherical (from a particle diameter) and from a density threshold."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .device import Device
from .fourier import centred_radius_2d, centred_radius_3d


def raised_cosine(distance: torch.Tensor, edge: float) -> torch.Tensor:
    """1 at distance <= 0, a cosine fall to 0 at distance >= edge."""
    if edge <= 0:
        return (distance <= 0).float()
    t = (distance / edge).clamp(0, 1)
    return 0.5 * (1 + torch.cos(torch.pi * t))


def particle_diameter(diameter: float | None, n: int, pixel_size: float) -> float:
    """A: the user's particle diameter, else 90% of the (n px) box. A diameter that is not a size
    within the box is refused: a mask from it would hold nothing, or nothing but the box."""
    if diameter is None:
        return 0.9 * n * pixel_size
    if not 0 < diameter <= n * pixel_size:
        raise ValueError(
            f"--diameter {diameter:g} A: must be > 0 and fit in the box ({n} px x {pixel_size:.3f} A "
            f"= {n * pixel_size:.1f} A)"
        )
    return diameter


def spherical_mask(n: int, radius: float, edge: float = 3.0, device: Device | None = None) -> torch.Tensor:
    """(n, n, n) soft sphere: 1 inside `radius` voxels, cosine edge `edge` voxels wide outside."""
    return raised_cosine(centred_radius_3d(n, device) - radius, edge)


def circular_mask(n: int, radius: float, edge: float = 3.0, device: Device | None = None) -> torch.Tensor:
    """(n, n) soft disc: 1 inside `radius` pixels, cosine edge `edge` pixels wide outside."""
    return raised_cosine(centred_radius_2d(n, device) - radius, edge)


def threshold_mask(
    volume: torch.Tensor, threshold: float, extend: float = 3.0, edge: float = 6.0
) -> torch.Tensor:
    """(n, n, n) soft mask: voxels above `threshold`, grown by `extend` voxels, with a cosine
    edge `edge` voxels wide (as relion_mask_create --ini_threshold --extend_inimask --width_soft_edge)."""
    inside = (volume > threshold).cpu().numpy()
    if not inside.any():
        raise ValueError(f"threshold {threshold} is above the map's maximum {float(volume.max()):.4g}")
    distance = torch.from_numpy(ndimage.distance_transform_edt(~inside).astype(np.float32))
    return raised_cosine(distance - extend, edge).to(volume.device)


def soft_mask_outside_map(
    volume: torch.Tensor, radius: float | None = None, edge: float = 3.0
) -> torch.Tensor:
    """Blend a (n, n, n) map into its background mean beyond `radius` (default n/2) voxels, with a
    cosine edge: the box corners hold only amplified noise after gridding correction (RELION does
    the same after every reconstruction)."""
    n = volume.shape[-1]
    keep = spherical_mask(n, n / 2 if radius is None else radius, edge, volume.device)
    outside = 1 - keep
    background = (volume * outside).sum() / outside.sum().clamp(min=1)
    return volume * keep + background * outside
