"""Fourier-space projection and back-projection by central slices (the projection-slice theorem).

A reference is held as the kx >= 0 half of the centred transform of its zero-padded (x `pad`) volume
(`fourier_shape`: Hermitian symmetry holds the rest), pre-divided by the gridding correction; slices
are read from it and written into it by trilinear interpolation (reading with torch's grid_sample,
writing by scattering to the same eight neighbours with the same weights), so extract_central_slices
and insert_central_slices are each other's adjoint (as real-linear maps: kx < 0 reads conjugates). Images
live on the points of the centred rfft2
grid that lie within a radius (`SlicePoints`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .device import Device
from .fourier import centred_radius_3d, irfft3_centered, rfft3_centered, rfft_frequencies_2d


@dataclass(frozen=True)
class SlicePoints:
    """The rfft2 coefficients of an n x n image with radius <= r_max, as a flat list.

    coords: (P, 2) float (kx, ky) in pixels of the image's transform; index: (P,) long into the
    flattened (n, n//2+1) rfft2 grid; weight: (P,) 0.5 on the kx = 0 column (whose Hermitian
    mates are in the list too), 1 elsewhere.
    """

    n: int
    coords: torch.Tensor
    index: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def within(cls, n: int, r_max: float | None = None, device: Device | None = None) -> SlicePoints:
        r_max = n / 2 if r_max is None else r_max
        ky, kx = rfft_frequencies_2d(n, device)
        ky, kx = ky.expand(n, n // 2 + 1), kx.expand(n, n // 2 + 1)
        inside = (kx**2 + ky**2 <= r_max**2).flatten()
        index = torch.nonzero(inside).squeeze(1)
        coords = torch.stack([kx.flatten()[index], ky.flatten()[index]], dim=1)
        weight = torch.where(coords[:, 0] == 0, 0.5, 1.0)
        return cls(n, coords, index, weight)

    @property
    def radius(self) -> float:
        """The largest frequency listed, pixels."""
        return float(self.coords.float().norm(dim=1).max()) if len(self.coords) else 0.0

    def selection(self, r_max: float) -> torch.Tensor:
        """(P,) bool: the points within r_max."""
        return (self.coords.float() ** 2).sum(1) <= r_max**2

    def subset(self, keep: torch.Tensor) -> SlicePoints:
        """The points where `keep` (P,) is true, in their order."""
        return SlicePoints(self.n, self.coords[keep], self.index[keep], self.weight[keep])

    def gather(self, ft: torch.Tensor) -> torch.Tensor:
        """(..., n, n//2+1) -> (..., P): the listed coefficients of a centred rfft2."""
        return ft.flatten(-2)[..., self.index]

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """(..., P) -> (..., n, n//2+1), zero off the list."""
        out = values.new_zeros(values.shape[:-1] + (self.n * (self.n // 2 + 1),))
        out[..., self.index] = values
        return out.unflatten(-1, (self.n, self.n // 2 + 1))


def gridding_correction(n: int, pad: float, device: Device | None = None) -> torch.Tensor:
    """(n, n, n): sinc^2 of the radius over the padded box, the real-space image of the trilinear
    kernel (RELION's radial form); volumes are divided by it before projection and after
    reconstruction."""
    return torch.sinc(centred_radius_3d(n, device) / (pad * n)) ** 2


def pad_volume(volume: torch.Tensor, m: int) -> torch.Tensor:
    """Zero-pad a (n, n, n) volume to (m, m, m) keeping the centre at index // 2."""
    n = volume.shape[-1]
    out = volume.new_zeros((m, m, m))
    s = slice(m // 2 - n // 2, m // 2 - n // 2 + n)
    out[s, s, s] = volume
    return out


def crop_volume(volume: torch.Tensor, n: int) -> torch.Tensor:
    """Central (n, n, n) of a (m, m, m) volume."""
    m = volume.shape[-1]
    s = slice(m // 2 - n // 2, m // 2 - n // 2 + n)
    return volume[s, s, s]


def fourier_shape(m: int) -> tuple[int, int, int]:
    """Shape of a Fourier volume of a (m, m, m) padded box: the kx >= 0 half (Hermitian symmetry
    gives the rest), kz and ky centred at m // 2, kx = 0 .. m // 2 (RELION's half layout, centred)."""
    return (m, m, m // 2 + 1)


def fourier_reference(volume: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """(n, n, n) real map -> fourier_shape(pad n) complex: the projector's Fourier volume."""
    n = volume.shape[-1]
    corrected = volume / gridding_correction(n, pad, volume.device)
    return rfft3_centered(pad_volume(corrected, pad * n))


def map_from_fourier(ft: torch.Tensor, n: int, pad: float = 2) -> torch.Tensor:
    """fourier_shape(pad n) complex reconstruction -> (n, n, n) real map, gridding-corrected."""
    volume = crop_volume(irfft3_centered(ft, ft.shape[0]), n)
    return volume / gridding_correction(n, pad, ft.device)


def _slice_coordinates(
    rotations: torch.Tensor,
    points: SlicePoints,
    pad: int,
    shape: tuple[int, ...],
    *,
    normalised: bool = False,
    point_major: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 3, 3) rotations -> (..., P, 3) coordinates (x, y, z) of pad A^T (kx, ky, 0) on a half
    volume of `shape` (depth, height, width: kz and ky centred at depth // 2, kx from 0), and
    (..., P) signs: -1 where kx < 0, so that the point was mirrored to -k (its value is the
    conjugate), else 1.

    `normalised`: in grid_sample's units ([-1, 1] from the first to the last voxel centre);
    `point_major`: rotations (B, R, 3, 3) give (B, P, R, 3) and (B, P, R). The scale is folded into
    the rotations and the result written by one GEMM in its final layout, then flipped and centred
    in place: passes over every point cost as much as the interpolation itself."""
    depth, height, width = shape
    dtype, device = rotations.dtype, rotations.device
    scale = torch.tensor([2 / (width - 1), 2 / (height - 1), 2 / (depth - 1)] if normalised else [1.0] * 3)
    centre = torch.tensor([0, height // 2, depth // 2]) * scale - (1 if normalised else 0)
    k2 = points.coords.to(dtype)
    m = pad * rotations[..., :2, :] * scale.to(dtype=dtype, device=device)  # rows 0,1 of A = columns of A^T
    if point_major:
        b, r = rotations.shape[:2]
        xyz = torch.matmul(k2, m.transpose(1, 2).reshape(b, 2, r * 3)).unflatten(-1, (r, 3))
    else:
        xyz = torch.matmul(k2, m)
    sign = torch.where(xyz[..., 0] < 0, -1.0, 1.0).to(dtype)
    return xyz.mul_(sign[..., None]).add_(centre.to(dtype=dtype, device=device)), sign


def reference_channels(reference: torch.Tensor, radius: float | None = None, pad: int = 2) -> torch.Tensor:
    """fourier_shape(m) complex -> (1, 2, d, d, d//2+1) real and imaginary channels, the layout
    slices are read from; with `radius` (pixels of the unpadded images), only the central block that
    slices within it reach, as RELION's projector keeps only up to its current size: reads of a
    block that fits in the cache are several times faster than of the whole padded volume."""
    m = reference.shape[0]
    half = m // 2 if radius is None else math.ceil(pad * radius) + 2
    if half < m // 2:
        s = slice(m // 2 - half, m // 2 + half + 1)
        reference = reference[s, s, : half + 1]
    return torch.view_as_real(reference).permute(3, 0, 1, 2).contiguous()[None]


def _read(channels: torch.Tensor, grid: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Trilinear reads of reference_channels at (..., 3) normalised coordinates -> (2, ...) real and
    imaginary parts, the imaginary part times `sign` (...) (-1: a conjugate read at -k).

    torch's 3D grid_sample on the CPU gives each entry of its batch to one thread, so the points are
    cut into one part per thread, each reading the same volume (an expanded view, not a copy)."""
    points = grid.reshape(-1, 3)
    n = points.shape[0]
    parts = max(1, min(torch.get_num_threads(), n // 4096)) if channels.device.type == "cpu" else 1
    length = -(-n // parts)
    if parts * length > n:
        points = torch.cat([points, points.new_zeros(parts * length - n, 3)])
    out = torch.nn.functional.grid_sample(
        channels.expand(parts, -1, -1, -1, -1),
        points.reshape(parts, 1, length, 1, 3),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # (parts, 2, 1, length, 1)
    out = out.reshape(parts, 2, length).transpose(0, 1).reshape(2, parts * length)[:, :n]
    out[1].mul_(sign.reshape(-1))
    return out.reshape((2, *sign.shape))


def extract_central_slices(
    reference: torch.Tensor, rotations: torch.Tensor, points: SlicePoints, pad: int = 2
) -> torch.Tensor:
    """Project: Fourier reference, (..., 3, 3) rotations -> (..., P) complex.

    reference: fourier_shape(m) complex, or its reference_channels (faster when reused, and when
    cropped to the points' radius). Each row holds the image transform (centred rfft2) at `points`
    of the projection along z of the reference rotated by A. Trilinear interpolation (grid_sample),
    zero off the grid; a point with kx < 0 reads the conjugate at -k (RELION's Projector does the
    same).
    """
    channels = reference_channels(reference) if reference.is_complex() else reference
    out = _read(channels, *_slice_coordinates(rotations, points, pad, channels.shape[-3:], normalised=True))
    return torch.complex(out[0], out[1])


def extract_slice_planes(
    channels: torch.Tensor, rotations: torch.Tensor, points: SlicePoints, pad: int = 2
) -> torch.Tensor:
    """Project point by point: reference_channels, (B, R, 3, 3) rotations (each image's own nearby
    poses) -> (2, B, P, R) real and imaginary parts, as extract_central_slices but laid out for the
    E-step's GEMMs (P x R per image, no complex copy), and read across each image's poses at every
    point in turn, so that neighbouring reads share cache lines."""
    shape = channels.shape[-3:]
    return _read(
        channels, *_slice_coordinates(rotations, points, pad, shape, normalised=True, point_major=True)
    )


def _trilinear(coords: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 3) coordinates (x, y, z) -> flat indices (8, ...) and weights (8, ...) of the corners on a
    grid of `shape` (depth, height, width). A corner that falls off the grid gets weight 0, and its
    index, clamped into the volume, then adds nothing wherever it points.

    Corners lead, so that every step runs over contiguous points; the axes' weights and the lower
    corner's index are made once per point, and the eight corners' by one product and one offset
    each: the passes over all eight corners cost more than anything else in a back-projection."""
    c = coords.reshape(-1, 3).T  # (3, N)
    floor = torch.floor(c)
    frac = c - floor
    lower = floor.to(torch.int32)
    # (2, 3, N): the lower and upper neighbour's weight on each axis. Only the points near the
    # grid's edge (the last shells at Nyquist) have corners off it, so an axis is masked only where
    # its extremes reach the edge: floor(c) < 0 or >= size is c < 0 or c >= size, and so on
    w = torch.stack([1 - frac, frac])
    masked = False
    for axis, (low, high) in enumerate(zip(*(t.tolist() for t in torch.aminmax(c, dim=1)))):
        size = shape[2 - axis]
        for corner, (first, last) in enumerate(((0, size), (-1, size - 1))):
            if low < first or high >= last:
                w[corner, axis].masked_fill_((c[axis] < first) | (c[axis] >= last), 0)
                masked = True
    weight = w[:, None, None, 2] * w[None, :, None, 1] * w[None, None, :, 0]
    depth, height, width = shape
    base = (lower[2].long() * height + lower[1]) * width + lower[0]
    offsets = torch.tensor(
        [(z * height + y) * width + x for z in (0, 1) for y in (0, 1) for x in (0, 1)], device=coords.device
    )
    flat = base + offsets[:, None]
    if masked:  # an index off the grid, whose weight is 0, is kept inside the volume
        flat.clamp_(0, depth * height * width - 1)
    return flat.reshape(8, *coords.shape[:-1]), weight.reshape(8, *coords.shape[:-1])


def insert_central_slices(
    data: torch.Tensor,
    weight: torch.Tensor | None,
    slices: torch.Tensor,
    slice_weights: torch.Tensor | None,
    rotations: torch.Tensor,
    points: SlicePoints,
    pad: int = 2,
) -> None:
    """Back-project, in place: the adjoint of extract_central_slices.

    data: fourier_shape(m) complex accumulator += P^T slices; slices: (B, P) complex. weight:
    optional real accumulator of the same shape += P^T slice_weights, slice_weights (B, P) real
    (e.g. CTF^2). A point with kx < 0 goes, conjugated, to -k (RELION's BackProjector), so every
    corner lies in the half volume; hermitian_symmetrize then completes the kx = 0 plane.
    """
    xyz, sign = _slice_coordinates(rotations, points, pad, data.shape)
    flat, w = _trilinear(xyz, data.shape)
    flat = flat.reshape(-1)
    slices = torch.where(sign < 0, slices.conj(), slices)
    # complex times real through the real view: torch would first make w complex
    values = torch.view_as_complex(torch.view_as_real(slices) * w[..., None])
    data.view(-1).scatter_add_(0, flat, values.reshape(-1))
    if weight is not None:
        assert slice_weights is not None, "a weight accumulator needs slice_weights"
        weight.view(-1).scatter_add_(0, flat, (slice_weights * w).reshape(-1))


def hermitian_symmetrize(data: torch.Tensor, weight: torch.Tensor | None = None) -> None:
    """Complete back-projected half-plane data, in place, on the kx = 0 plane (where a point and its
    mate both live): D(0, ky, kz) += conj(D(0, -ky, -kz)), W likewise. Elsewhere the mirroring at
    insertion already put every point on its kx >= 0 side.

    Pair with SlicePoints.weight (0.5 on kx = 0) so that every full-plane point counts once.
    """
    m = data.shape[0]

    def mirror(plane):  # centred index i <-> -i: m - 1 - i for odd m, m - i (mod m) for even m
        return torch.roll(torch.flip(plane, dims=(0, 1)), shifts=(1 - m % 2,) * 2, dims=(0, 1))

    plane = data[:, :, 0]
    plane += mirror(plane).conj()
    if weight is not None:
        plane = weight[:, :, 0]
        plane += mirror(plane)
