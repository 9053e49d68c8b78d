"""In-plane rotation of 2D references in Fourier space: the 2D projector of 2D classification.

As projector.py does for volumes: a reference image is held as the full, centred transform of
its zero-padded (x `pad`) copy, pre-divided by the gridding correction; rotated images are read
from it by bilinear interpolation (grid_sample) and written into it by scattering to the same
four neighbours with the same weights, so extract_rotated and insert_rotated are adjoint.
An image at in-plane angle psi samples the reference's transform at A^T (kx, ky), A the top-left
2 x 2 of RELION's Euler matrix (0, 0, psi): the convention of rlnAnglePsi.
"""

from __future__ import annotations

import torch

from .device import Device
from .fourier import centred_radius_2d
from .projector import SlicePoints
from .rotation import euler_to_matrix


def inplane_matrices(psi: torch.Tensor) -> torch.Tensor:
    """(J,) angles in degrees -> (J, 2, 2) matrices A."""
    zero = torch.zeros_like(psi)
    return euler_to_matrix(zero, zero, psi)[:, :2, :2]


def gridding_correction_2d(n: int, pad: int, device: Device | None = None) -> torch.Tensor:
    """(n, n): sinc^2 of the radius over the padded box (the bilinear kernel's real-space image)."""
    return torch.sinc(centred_radius_2d(n, device) / (pad * n)) ** 2


def _pad_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(..., n, n) -> (..., size, size), centre kept at index // 2: zero-pads or crops."""
    n = images.shape[-1]
    out = images.new_zeros(images.shape[:-2] + (size, size))
    if size >= n:
        s = slice(size // 2 - n // 2, size // 2 - n // 2 + n)
        out[..., s, s] = images
        return out
    s = slice(n // 2 - size // 2, n // 2 - size // 2 + size)
    return images[..., s, s].clone()


def fourier_images(images: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """(K, n, n) real references -> (K, pad n, pad n) complex, centred: what extract_rotated reads."""
    n = images.shape[-1]
    corrected = _pad_crop(images / gridding_correction_2d(n, pad, images.device), pad * n)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(corrected, dim=(-2, -1))), dim=(-2, -1))


def images_from_fourier(ft: torch.Tensor, n: int, pad: int = 2) -> torch.Tensor:
    """(K, m, m) complex centred transforms -> (K, n, n) real images, gridding-corrected."""
    full = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(ft, dim=(-2, -1))), dim=(-2, -1)).real
    return _pad_crop(full, n) / gridding_correction_2d(n, pad, ft.device)


def _coordinates(psi: torch.Tensor, points: SlicePoints, pad: int, m: int) -> torch.Tensor:
    """(J,) angles -> (J, P, 2) padded-grid coordinates (y, x) of A^T (kx, ky)."""
    a = inplane_matrices(psi.cpu()).to(points.coords.device)
    k = torch.einsum("jab,pa->jpb", a, points.coords.float())
    return pad * k.flip(-1) + m // 2


def extract_rotated(
    reference: torch.Tensor, psi: torch.Tensor, points: SlicePoints, pad: int = 2
) -> torch.Tensor:
    """(K, m, m) complex references, (J,) angles -> (K, J, P) complex: each reference rotated by
    each angle, at `points` of the image's centred rfft2."""
    k, m = reference.shape[0], reference.shape[-1]
    channels = torch.view_as_real(reference).permute(0, 3, 1, 2).reshape(1, 2 * k, m, m)
    yx = _coordinates(psi, points, pad, m)
    grid = (yx.flip(-1) * (2 / (m - 1)) - 1).reshape(1, -1, 1, 2)
    out = torch.nn.functional.grid_sample(
        channels, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )[0, :, :, 0].reshape(k, 2, len(psi), -1)
    return torch.complex(out[:, 0], out[:, 1])


def _bilinear(coords: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2) grid coordinates -> flat indices (..., 4) and weights (..., 4) of the corners;
    a corner off the grid gets weight 0."""
    base = torch.floor(coords)
    frac = coords - base
    base = base.long()
    idx = torch.stack([base, base + 1], dim=-1)  # (..., 2 axes, 2 corners)
    wts = torch.stack([1 - frac, frac], dim=-1) * ((idx >= 0) & (idx < m))
    idx = idx % m
    (y, x), (wy, wx) = idx.unbind(-2), wts.unbind(-2)
    flat = (y[..., :, None] * m + x[..., None, :]).flatten(-2)
    return flat, (wy[..., :, None] * wx[..., None, :]).flatten(-2)


def insert_rotated(
    data: torch.Tensor,
    weight: torch.Tensor,
    slices: torch.Tensor,
    slice_weights: torch.Tensor,
    psi: torch.Tensor,
    points: SlicePoints,
    pad: int = 2,
) -> None:
    """In place, the adjoint of extract_rotated: data (K, m, m) complex += slices (K, J, P) put back
    at their angles, weight (K, m, m) += slice_weights (K, J, P) likewise. The slices carry the
    Hermitian point weight already."""
    k, m = data.shape[0], data.shape[-1]
    flat, w = _bilinear(_coordinates(psi, points, pad, m), m)  # (J, P, 4)
    offsets = (torch.arange(k, device=data.device) * m * m)[:, None, None, None]
    index = (flat[None] + offsets).reshape(-1)
    data.view(-1).index_add_(0, index, (slices.unsqueeze(-1) * w).reshape(-1))
    weight.view(-1).index_add_(0, index, (slice_weights.unsqueeze(-1) * w).reshape(-1))


def hermitian_complete(data: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, m, m) half-plane sums -> full plane: D(k) += conj(D(-k)), W(k) += W(-k)."""

    def mirror(x):
        return torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))

    return data + mirror(data).conj(), weight + mirror(weight)
