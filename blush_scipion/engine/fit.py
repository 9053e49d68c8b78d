"""Rigid fit of one map onto another (rotation and shift), as a map is docked before it is scored
against a known structure.

A refinement fixes its map's absolute frame only as well as its starting reference does: from a
40 A start both half maps can drift together by a few degrees, which costs nothing in the
gold-standard FSC but a lot in an FSC against the truth at high resolution. Maps are compared in
a common frame, the way a model is fitted into a map (Chimera's fitmap) before map-model FSC.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .fourier import cosine_low_pass, resize_fourier_3d
from .mask import spherical_mask


def _rotation_from_vector(w: torch.Tensor) -> torch.Tensor:
    """(3,) axis-angle vector (radians) -> (3, 3) rotation matrix, differentiable (for the search;
    rotation.axis_angle_matrix builds fixed ones)."""
    zero = w.new_zeros(())
    skew = torch.stack(
        [torch.stack([zero, -w[2], w[1]]), torch.stack([w[2], zero, -w[0]]), torch.stack([-w[1], w[0], zero])]
    )
    return torch.linalg.matrix_exp(skew)


def _sample(
    volume: torch.Tensor, rotation: torch.Tensor, shift: torch.Tensor, scale: int = 1
) -> torch.Tensor:
    """volume (m, m, m) sampled at R x + t for the voxels x of an (m/scale)-voxel grid's frame,
    measured from the centre (index m // 2) in voxels of that grid; trilinear."""
    m = volume.shape[-1]
    axis = (torch.arange(m, device=volume.device, dtype=volume.dtype) - m // 2) / scale
    x = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)  # (m, m, m, 3) in (i, j, k)
    p = (x @ rotation.T + shift) * scale + m // 2  # voxel indices
    grid = ((p + 0.5) * 2 / m - 1).flip(-1)  # grid_sample wants (k, j, i)
    return F.grid_sample(
        volume[None, None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False
    )[0, 0]


def transform_map(
    volume: torch.Tensor, rotation: torch.Tensor, shift: torch.Tensor, oversample: int = 2
) -> torch.Tensor:
    """(n, n, n) map -> the map whose value at x (voxels from the centre n // 2) is volume(R x + t).

    Interpolates on an `oversample`-times finer grid (Fourier-padded) and crops back, so the
    trilinear smoothing stays far below the map's Nyquist frequency."""
    n = volume.shape[-1]
    fine = resize_fourier_3d(volume, oversample * n)
    return resize_fourier_3d(_sample(fine, rotation, shift, oversample), n)


def fit_rigid(
    moving: torch.Tensor,
    fixed: torch.Tensor,
    pixel_size: float,
    radius: float | None = None,
    resolutions: tuple[float, ...] = (15.0, 10.0, 7.0),
    steps: int = 120,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The rotation (3, 3) and shift (3,) (voxels) that best put `moving` (n, n, n) onto `fixed`
    (n, n, n): transform_map(moving, R, t) ~ fixed. Local search from the identity (a refinement's
    drift, not a global docking), maximising the correlation inside a sphere of `radius` voxels
    (default 0.4 n), coarse to fine through `resolutions` (A). Also returns the final correlation."""
    n = fixed.shape[-1]
    mask = spherical_mask(n, radius or 0.4 * n, edge=4, device=fixed.device)
    w = torch.zeros(3, requires_grad=True)
    t = torch.zeros(3, requires_grad=True)
    for resolution in resolutions:
        shell = n * pixel_size / resolution
        a, b = cosine_low_pass(moving, shell, 3.0), cosine_low_pass(fixed, shell, 3.0) * mask
        b = (b - b.mean()) / b.norm()
        opt = torch.optim.Adam([{"params": [w], "lr": 2e-3}, {"params": [t], "lr": 0.05}])
        for _ in range(steps):
            opt.zero_grad()
            moved = _sample(a, _rotation_from_vector(w), t) * mask
            moved = moved - moved.mean()
            corr = (moved * b).sum() / moved.norm().clamp(min=1e-12)
            (-corr).backward()
            opt.step()
    return _rotation_from_vector(w).detach(), t.detach(), float(corr.detach())
