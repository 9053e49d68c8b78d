"""Centred Fourier transforms and frequency grids (RELION's centring: origin at index n // 2)."""

from __future__ import annotations

import torch

from .device import Device


def rfftn_centered(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., n, ..., n) real over the last `dim` axes -> (..., n, ..., n//2+1) complex: real-space
    origin at n//2, every frequency axis but the last centred at n//2."""
    axes = tuple(range(-dim, 0))
    return torch.fft.fftshift(torch.fft.rfftn(torch.fft.ifftshift(x, dim=axes), dim=axes), dim=axes[:-1])


def irfftn_centered(ft: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Inverse of rfftn_centered."""
    axes = tuple(range(-dim, 0))
    x = torch.fft.irfftn(torch.fft.ifftshift(ft, dim=axes[:-1]), s=(n,) * dim, dim=axes)
    return torch.fft.fftshift(x, dim=axes)


def rfft2_centered(images: torch.Tensor) -> torch.Tensor:
    """(..., n, n) real -> (..., n, n//2+1) complex, real origin at n//2, ky centred at n//2."""
    return rfftn_centered(images, 2)


def irfft2_centered(ft: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of rfft2_centered: (..., n, n//2+1) complex -> (..., n, n) real."""
    return irfftn_centered(ft, n, 2)


def rfft3_centered(volume: torch.Tensor) -> torch.Tensor:
    """(..., n, n, n) real -> (..., n, n, n//2+1) complex; kz and ky centred at n//2."""
    return rfftn_centered(volume, 3)


def irfft3_centered(ft: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of rfft3_centered: (..., n, n, n//2+1) complex -> (..., n, n, n) real."""
    return irfftn_centered(ft, n, 3)


def fft3_centered(volume: torch.Tensor) -> torch.Tensor:
    """(..., m, m, m) real -> full (..., m, m, m) complex with DC at index m//2 on every axis."""
    dims = (-3, -2, -1)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(volume, dim=dims), dim=dims), dim=dims)


def ifft3_centered(ft: torch.Tensor) -> torch.Tensor:
    """Inverse of fft3_centered; returns the real part."""
    dims = (-3, -2, -1)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(ft, dim=dims), dim=dims), dim=dims).real


def rfft_frequencies_2d(n: int, device: Device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer frequencies of the centred rfft2 grid: ky (n, 1) in [-n/2, n/2), kx (1, n//2+1)."""
    ky = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    kx = torch.arange(n // 2 + 1, device=device, dtype=torch.float32)
    return ky[:, None], kx[None, :]


def rfft_frequencies_3d(
    n: int, device: Device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer frequencies of the centred rfft3 grid: kz (n,1,1), ky (1,n,1), kx (1,1,n//2+1)."""
    k = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    kx = torch.arange(n // 2 + 1, device=device, dtype=torch.float32)
    return k[:, None, None], k[None, :, None], kx[None, None, :]


def centred_radius_3d(n: int, device: Device | None = None) -> torch.Tensor:
    """(n, n, n) distance from index n // 2: a voxel's radius in a centred map, or a frequency's
    in a full centred transform."""
    k = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    return torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)


def centred_radius_2d(n: int, device: Device | None = None) -> torch.Tensor:
    """(n, n) distance from index n // 2 (see centred_radius_3d)."""
    k = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    return torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)


def rfft_radius(n: int, dim: int, device: Device | None = None) -> torch.Tensor:
    """(n, ..., n//2+1) frequency radius (Fourier pixels) of each coefficient of a centred rfftn."""
    k = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    kx = torch.arange(n // 2 + 1, device=device, dtype=torch.float32)
    axes = [k] * (dim - 1) + [kx]
    squared = torch.zeros((), device=device)
    for i, a in enumerate(axes):
        squared = squared + a.reshape([-1 if i == j else 1 for j in range(dim)]) ** 2
    return torch.sqrt(squared)


def rfft_shell_index(n: int, dim: int, device: Device | None = None) -> torch.Tensor:
    """(n, ..., n//2+1) long: the Fourier shell (rounded radius) of each rfftn coefficient."""
    return torch.round(rfft_radius(n, dim, device)).long()


def rfft_shell_index_2d(n: int, device: Device | None = None) -> torch.Tensor:
    return rfft_shell_index(n, 2, device)


def rfft_shell_index_3d(n: int, device: Device | None = None) -> torch.Tensor:
    return rfft_shell_index(n, 3, device)


def rfft_hermitian_weight(n: int, dim: int, device: Device | None = None) -> torch.Tensor:
    """(1, ..., n//2+1): how often each kx plane of the half transform stands for the full one.

    Sums over a half transform weighted by this equal sums over the full transform.
    """
    w = torch.full((n // 2 + 1,), 2.0, device=device)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0  # the Nyquist plane is its own Hermitian mate
    return w.reshape((1,) * (dim - 1) + (-1,))


def rfft_hermitian_weight_3d(n: int, device: Device | None = None) -> torch.Tensor:
    return rfft_hermitian_weight(n, 3, device)


def shell_sum(values: torch.Tensor, shells: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Sum of `values` (real, shaped like `shells`, or (..., *shells.shape): a batch) per shell
    index -> (n_shells,) or (..., n_shells); shells >= n_shells dropped."""
    index = shells.clamp(max=n_shells).flatten()  # one overflow bin, dropped below
    if values.dim() <= shells.dim():  # one map: a plain histogram
        sums = torch.bincount(index, weights=values.flatten().to(torch.float64), minlength=n_shells + 1)
        return sums[:n_shells].to(values.dtype)
    flat = values.reshape(-1, index.numel()).to(torch.float64)
    sums = torch.zeros(len(flat), n_shells + 1, dtype=torch.float64, device=values.device)
    sums.index_add_(1, index, flat)
    batch = values.shape[: values.dim() - shells.dim()]
    return sums[:, :n_shells].reshape(batch + (n_shells,)).to(values.dtype)


def phase_shift_2d(ft: torch.Tensor, shifts: torch.Tensor, n: int) -> torch.Tensor:
    """Shift images by `shifts` pixels in Fourier space.

    ft: (B, n, n//2+1) centred rfft2; shifts: (B, 2) as (x, y) pixels. Returns ft of image(r - s).
    """
    ky, kx = rfft_frequencies_2d(n, ft.device)
    phase = -2 * torch.pi * (kx * shifts[:, 0, None, None] + ky * shifts[:, 1, None, None]) / n
    return ft * torch.polar(torch.ones_like(phase), phase)


def resize_fourier(x: torch.Tensor, n_new: int, dim: int) -> torch.Tensor:
    """Fourier crop or zero-pad the last `dim` axes (n each) to n_new on the same physical extent.

    The voxel size becomes old * n / n_new; densities keep their values (not their sums).
    """
    n = x.shape[-1]
    if n_new == n:
        return x
    axes = tuple(range(-dim, 0))
    ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=axes), dim=axes), dim=axes)
    m = min(n, n_new)
    src = (slice(n // 2 - m // 2, n // 2 - m // 2 + m),) * dim
    dst = (slice(n_new // 2 - m // 2, n_new // 2 - m // 2 + m),) * dim
    out = torch.zeros(x.shape[:-dim] + (n_new,) * dim, dtype=ft.dtype, device=ft.device)
    out[(...,) + dst] = ft[(...,) + src]
    back = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(out, dim=axes), dim=axes), dim=axes).real
    return back * (n_new / n) ** dim


def resize_fourier_3d(volume: torch.Tensor, n_new: int) -> torch.Tensor:
    """resize_fourier of a (n, n, n) volume."""
    return resize_fourier(volume, n_new, 3)


def cosine_low_pass_filter(
    n: int, shell: float, width: float, device: Device | None = None, dim: int = 3
) -> torch.Tensor:
    """(n, ..., n//2+1) on the centred rfftn grid of `dim` axes: a raised cosine falling from 1 to 0
    over `width` shells centred on `shell` (radius in Fourier pixels)."""
    t = ((rfft_radius(n, dim, device) - (shell - width / 2)) / max(width, 1e-6)).clamp(0, 1)
    return 0.5 * (1 + torch.cos(torch.pi * t))


def cosine_low_pass(x: torch.Tensor, shell: float, width: float, dim: int = 3) -> torch.Tensor:
    """A map (or image, dim=2) low-passed by cosine_low_pass_filter."""
    n = x.shape[-1]
    keep = cosine_low_pass_filter(n, shell, width, x.device, dim)
    return irfftn_centered(rfftn_centered(x, dim) * keep, n, dim)


def low_pass(
    volume: torch.Tensor, resolution: float, pixel_size: float, edge_shells: float = 2.0
) -> torch.Tensor:
    """Raised-cosine low-pass of a (n, n, n) map at `resolution` A: full pass up to that shell,
    zero `edge_shells` beyond it."""
    k = volume.shape[-1] * pixel_size / resolution
    return cosine_low_pass(volume, k + edge_shells / 2, edge_shells)
