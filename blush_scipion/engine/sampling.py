"""Pose sampling: HEALPix orientation grids (RELION's), local rotation grids and translations."""

from __future__ import annotations

import math

import torch

from .rotation import axis_angle_matrix, euler_to_matrix


def healpix_directions(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of the 12 * 4^order HEALPix pixels (RING scheme): (rot, tilt) in degrees, (N,) each.

    rot is the pixel's longitude and tilt its colatitude, as RELION's HealpixSampling uses them.
    """
    nside = 2**order
    npix = 12 * nside * nside
    ncap = 2 * nside * (nside - 1)
    p = torch.arange(npix, dtype=torch.float64)
    z = torch.empty(npix, dtype=torch.float64)
    phi = torch.empty(npix, dtype=torch.float64)

    north = p < ncap
    ring = torch.floor((1 + torch.sqrt(1 + 2 * p[north])) / 2)
    j = p[north] + 1 - 2 * ring * (ring - 1)
    z[north] = 1 - ring**2 * 4 / npix
    phi[north] = (j - 0.5) * math.pi / (2 * ring)

    equator = (p >= ncap) & (p < npix - ncap)
    ip = p[equator] - ncap
    tmp = torch.floor(ip / (4 * nside))
    ring = tmp + nside
    j = ip - 4 * nside * tmp + 1
    fodd = torch.where((ring + nside) % 2 == 1, 1.0, 0.5)
    z[equator] = (2 * nside - ring) * 2 / (3 * nside)
    phi[equator] = (j - fodd) * math.pi / (2 * nside)

    south = p >= npix - ncap
    ip = npix - p[south]
    ring = torch.floor((1 + torch.sqrt(2 * ip - 1)) / 2)
    j = 4 * ring + 1 - (ip - 2 * ring * (ring - 1))
    z[south] = -1 + ring**2 * 4 / npix
    phi[south] = (j - 0.5) * math.pi / (2 * ring)
    return torch.rad2deg(phi).float(), torch.rad2deg(torch.arccos(z.clamp(-1, 1))).float()


def angular_step(order: int) -> float:
    """Angular sampling (degrees) of HEALPix `order`: 360 / (6 * 2^order), RELION's definition."""
    return 360.0 / (6 * 2**order)


def orientation_grid(order: int) -> torch.Tensor:
    """(R, 3) Euler angles (rot, tilt, psi): every HEALPix direction x in-plane steps of angular_step."""
    rot, tilt = healpix_directions(order)
    n_psi = 6 * 2**order
    psi = torch.arange(n_psi, dtype=torch.float32) * (360.0 / n_psi)
    return torch.stack(
        [rot.repeat_interleave(n_psi), tilt.repeat_interleave(n_psi), psi.repeat(len(rot))], dim=1
    )


def grid_rotations(eulers: torch.Tensor) -> torch.Tensor:
    """(R, 3) Euler angles -> (R, 3, 3) matrices."""
    return euler_to_matrix(eulers[:, 0], eulers[:, 1], eulers[:, 2])


def local_rotations(step: float, half_width: int) -> torch.Tensor:
    """(J, 3, 3) small rotations on a cubic grid of rotation vectors, `step` degrees apart, up to
    `half_width` steps along each axis, inside the ball of that radius; identity first."""
    k = torch.arange(-half_width, half_width + 1, dtype=torch.float32)
    v = torch.stack(torch.meshgrid(k, k, k, indexing="ij"), dim=-1).reshape(-1, 3)
    v = v[(v**2).sum(1) <= half_width**2 + 1e-6]
    v = v[torch.argsort((v**2).sum(1), stable=True)]
    mats = [
        axis_angle_matrix(tuple(x.tolist()), step * float(x.norm())) if x.norm() > 0 else torch.eye(3)
        for x in v
    ]
    return torch.stack(mats)


def translation_grid(offset_range: float, step: float) -> torch.Tensor:
    """(T, 2) shifts (x, y) in pixels on a square grid of `step`, inside a disc of `offset_range`;
    (0, 0) first."""
    n = int(math.floor(offset_range / step + 1e-6))
    k = torch.arange(-n, n + 1, dtype=torch.float32) * step
    xy = torch.stack(torch.meshgrid(k, k, indexing="xy"), dim=-1).reshape(-1, 2)
    xy = xy[(xy**2).sum(1) <= offset_range**2 + 1e-6]
    return xy[torch.argsort((xy**2).sum(1), stable=True)]
