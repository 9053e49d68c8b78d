"""Rotations in RELION's convention: ZYZ Euler angles (rot, tilt, psi) in degrees.

A = euler_to_matrix(rot, tilt, psi) rotates the reference into the view of the particle: the
image's central slice samples the reference's transform at A^T (kx, ky, 0) (row-major, A left-
multiplies column vectors of xyz). As RELION's Euler_angles2matrix.
"""

from __future__ import annotations

import math

import torch


def euler_to_matrix(rot: torch.Tensor, tilt: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """(...) angles in degrees -> (..., 3, 3) rotation matrices A = Rz(psi) Ry(tilt) Rz(rot)."""
    a, b, g = (torch.deg2rad(torch.as_tensor(x, dtype=torch.float64)) for x in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = a.cos(), a.sin(), b.cos(), b.sin(), g.cos(), g.sin()
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2).float()


def matrix_to_euler(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 3, 3) -> (rot, tilt, psi) in degrees, inverse of euler_to_matrix (tilt in [0, 180])."""
    m = matrix.double()
    sin_tilt = torch.sqrt(m[..., 0, 2] ** 2 + m[..., 1, 2] ** 2)
    regular = sin_tilt > 1e-6
    psi = torch.where(
        regular, torch.atan2(m[..., 1, 2], -m[..., 0, 2]), torch.atan2(-m[..., 1, 0], m[..., 0, 0])
    )
    rot = torch.where(regular, torch.atan2(m[..., 2, 1], m[..., 2, 0]), torch.zeros_like(psi))
    tilt = torch.atan2(sin_tilt, m[..., 2, 2])
    # gimbal lock at tilt 180: the whole rotation goes into psi with the other sign convention
    flipped = ~regular & (m[..., 2, 2] < 0)
    psi = torch.where(flipped, torch.atan2(m[..., 1, 0], -m[..., 0, 0]), psi)
    return torch.rad2deg(rot).float(), torch.rad2deg(tilt).float(), torch.rad2deg(psi).float()


def random_rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3) Euler angles (rot, tilt, psi) in degrees, uniformly distributed over SO(3)."""
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    rot = 360 * u[:, 0] - 180
    tilt = torch.rad2deg(torch.arccos(1 - 2 * u[:, 1]))  # cos(tilt) uniform: uniform directions
    psi = 360 * u[:, 2] - 180
    return torch.stack([rot, tilt, psi], dim=1).float()


def axis_angle_matrix(axis, degrees: float) -> torch.Tensor:
    """(3, 3) matrix rotating column vectors by `degrees` about `axis` (right-handed)."""
    x, y, z = (v / math.sqrt(sum(c * c for c in axis)) for v in axis)
    t = math.radians(degrees)
    c, s, C = math.cos(t), math.sin(t), 1 - math.cos(t)
    return torch.tensor(
        [
            [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
            [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
            [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
        ],
        dtype=torch.float32,
    )


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) x (..., 3, 3) -> (...) angle in degrees of the rotation a b^T."""
    trace = (a * b).sum(dim=(-2, -1))
    return torch.rad2deg(torch.arccos(((trace - 1) / 2).clamp(-1, 1)))


def symmetric_distance(a: torch.Tensor, b: torch.Tensor, operators: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) x (N, 3, 3) poses, (S, 3, 3) symmetry operators -> (N,) degrees: the angle from
    a to the nearest of b's symmetry-equivalent poses b S (which project a symmetric map alike)."""
    return angular_distance(a[:, None], b[:, None] @ operators.to(b.dtype)).amin(dim=1)


def rotation_vector_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors in degrees (axis times angle) -> (..., 3, 3) matrices, rotating
    column vectors right-handedly about the axis as axis_angle_matrix does (Rodrigues)."""
    v = torch.deg2rad(vectors.double())
    angle = v.norm(dim=-1, keepdim=True)
    axis = v / angle.clamp(min=1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack(
        [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2
    )
    s, c = angle.sin()[..., None], angle.cos()[..., None]
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(cross)
    return (eye + s * cross + (1 - c) * cross @ cross).float()
