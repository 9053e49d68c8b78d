"""Fourier-space projection and back-projection by central slices (the projection-slice theorem).

A reference is held as the full, centred, complex transform of its zero-padded (x `pad`) volume,
pre-divided by the gridding correction; slices are read from it and written into it by trilinear
interpolation (reading with torch's grid_sample, writing by scattering to the same eight
neighbours with the same weights), so extract_central_slices and insert_central_slices are each
other's adjoint.
Images live on the points of the centred rfft2 grid that lie within a radius (`SlicePoints`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .fourier import centred_radius_3d, fft3_centered, ifft3_centered, rfft_frequencies_2d


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
    def within(cls, n: int, r_max: float | None = None, device=None) -> "SlicePoints":
        r_max = n / 2 if r_max is None else r_max
        ky, kx = rfft_frequencies_2d(n, device)
        ky, kx = ky.expand(n, n // 2 + 1), kx.expand(n, n // 2 + 1)
        inside = (kx**2 + ky**2 <= r_max**2).flatten()
        index = torch.nonzero(inside).squeeze(1)
        coords = torch.stack([kx.flatten()[index], ky.flatten()[index]], dim=1)
        weight = torch.where(coords[:, 0] == 0, 0.5, 1.0)
        return cls(n, coords, index, weight)

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


def gridding_correction(n: int, pad: int, device=None) -> torch.Tensor:
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


def fourier_reference(volume: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """(n, n, n) real map -> (pad n,)*3 complex: the projector's Fourier volume."""
    n = volume.shape[-1]
    corrected = volume / gridding_correction(n, pad, volume.device)
    return fft3_centered(pad_volume(corrected, pad * n))


def map_from_fourier(ft: torch.Tensor, n: int, pad: int = 2) -> torch.Tensor:
    """(pad n,)*3 complex reconstruction -> (n, n, n) real map, gridding-corrected."""
    volume = crop_volume(ifft3_centered(ft), n)
    return volume / gridding_correction(n, pad, ft.device)


def _slice_coordinates(rotations: torch.Tensor, points: SlicePoints, pad: int, m: int) -> torch.Tensor:
    """(B, 3, 3) -> (B, P, 3) padded-grid coordinates (z, y, x) of A^T (kx, ky, 0)."""
    k2 = points.coords.to(rotations.dtype)
    k3 = torch.einsum("bji,pj->bpi", rotations[:, :2, :], k2)  # rows 0,1 of A = columns of A^T
    return pad * k3.flip(-1) + m // 2


def _sampling_grid(rotations: torch.Tensor, points: SlicePoints, pad: int, m: int) -> torch.Tensor:
    """(1, 1, B P, 1, 3) grid_sample coordinates: (x, y, z) in [-1, 1] with voxel centres at the ends."""
    zyx = _slice_coordinates(rotations, points, pad, m)
    return (zyx.flip(-1) * (2 / (m - 1)) - 1).reshape(1, 1, -1, 1, 3)


def reference_channels(reference: torch.Tensor) -> torch.Tensor:
    """(m, m, m) complex -> (1, 2, m, m, m) real and imaginary channels, the layout slices are read from."""
    return torch.view_as_real(reference).permute(3, 0, 1, 2).contiguous()[None]


def extract_central_slices(reference: torch.Tensor, rotations: torch.Tensor, points: SlicePoints,
                           pad: int = 2) -> torch.Tensor:
    """Project: Fourier reference, (B, 3, 3) rotations -> (B, P) complex.

    reference: (m, m, m) complex, or its reference_channels (faster when reused). Each row holds
    the image transform (centred rfft2) at `points` of the projection along z of the reference
    rotated by A. Trilinear interpolation (grid_sample), zero off the grid.
    """
    channels = reference_channels(reference) if reference.is_complex() else reference
    m = channels.shape[-1]
    out = torch.nn.functional.grid_sample(channels, _sampling_grid(rotations, points, pad, m), mode="bilinear",
                                          padding_mode="zeros", align_corners=True)[0, :, 0, :, 0]
    return torch.complex(out[0], out[1]).reshape(len(rotations), -1)


def _trilinear(coords: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 3) grid coordinates -> flat indices (..., 8) and weights (..., 8) of the corners.
    A corner that falls off the grid gets weight 0 (its index wraps)."""
    base = torch.floor(coords)
    frac = coords - base
    base = base.long()
    upper = base + 1
    lower_w = (1 - frac) * ((base >= 0) & (base < m))
    upper_w = frac * ((upper >= 0) & (upper < m))
    # per axis: (..., 2) indices and weights of the lower and upper neighbour
    idx = torch.stack([base % m, upper % m], dim=-1)
    wts = torch.stack([lower_w, upper_w], dim=-1)
    z, y, x = idx.unbind(-2)
    wz, wy, wx = wts.unbind(-2)
    flat = ((z[..., :, None, None] * m + y[..., None, :, None]) * m + x[..., None, None, :]).flatten(-3)
    w = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]).flatten(-3)
    return flat, w


def insert_central_slices(data: torch.Tensor, weight: torch.Tensor | None, slices: torch.Tensor,
                          slice_weights: torch.Tensor | None, rotations: torch.Tensor,
                          points: SlicePoints, pad: int = 2) -> None:
    """Back-project, in place: the adjoint of extract_central_slices.

    data: (m, m, m) complex accumulator += P^T slices; slices: (B, P) complex. weight: optional
    (m, m, m) real accumulator += P^T slice_weights, slice_weights (B, P) real (e.g. CTF^2).
    """
    m = data.shape[-1]
    flat, w = _trilinear(_slice_coordinates(rotations, points, pad, m), m)
    flat = flat.reshape(-1)
    data.view(-1).index_add_(0, flat, (slices.unsqueeze(-1) * w).reshape(-1))
    if weight is not None:
        weight.view(-1).index_add_(0, flat, (slice_weights.unsqueeze(-1) * w).reshape(-1))


def hermitian_symmetrize(data: torch.Tensor, weight: torch.Tensor | None = None):
    """Complete back-projected half-plane data: D(k) += conj(D(-k)), W(k) += W(-k).

    Pair with SlicePoints.weight (0.5 on kx = 0) so that every full-plane point counts once.
    """
    def mirror(x):  # index i <-> m - i on a centred grid of even size (i = 0 maps to itself)
        return torch.roll(torch.flip(x, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))

    data = data + mirror(data).conj()
    if weight is None:
        return data
    return data, weight + mirror(weight)
