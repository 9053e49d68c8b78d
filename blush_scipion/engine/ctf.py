"""The contrast transfer function in RELION's convention (ctf.h: CTF::getCTF)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .device import Device
from .fourier import rfft_frequencies_2d


def electron_wavelength(voltage_kv: torch.Tensor) -> torch.Tensor:
    """Relativistic electron wavelength in Angstrom for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    return 12.2643247 / torch.sqrt(v * (1 + v * 0.978466e-6))


@dataclass
class CtfParameters:
    """Per-particle CTF parameters, each a (B,) tensor, in RELION's STAR units.

    defocus_u/v: Angstrom (positive = underfocus); defocus_angle: degrees (astigmatism azimuth
    from x); voltage: kV; cs: mm; amplitude_contrast: fraction; phase_shift: degrees;
    bfactor: A^2 (envelope exp(-B s^2 / 4)); scale: multiplier.
    """

    defocus_u: torch.Tensor
    defocus_v: torch.Tensor
    defocus_angle: torch.Tensor
    voltage: torch.Tensor
    cs: torch.Tensor
    amplitude_contrast: torch.Tensor
    phase_shift: torch.Tensor
    bfactor: torch.Tensor
    scale: torch.Tensor

    def __getitem__(self, index) -> CtfParameters:
        return CtfParameters(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: Device) -> CtfParameters:
        return CtfParameters(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def compute_ctf_2d(params: CtfParameters, n: int, pixel_size: float | torch.Tensor) -> torch.Tensor:
    """(B, n, n//2+1) real CTF on the centred rfft2 grid of n x n images of `pixel_size` A."""
    device = params.defocus_u.device
    ky, kx = rfft_frequencies_2d(n, device)
    apix = torch.as_tensor(pixel_size, dtype=torch.float32, device=device).reshape(-1, 1, 1)
    sx, sy = kx / (n * apix), ky / (n * apix)  # spatial frequency, 1/A
    s2 = sx**2 + sy**2
    azimuth = torch.atan2(sy, sx)

    def per_particle(x):
        return x.reshape(-1, 1, 1).to(torch.float32)

    lam = per_particle(electron_wavelength(params.voltage))
    du, dv = per_particle(params.defocus_u), per_particle(params.defocus_v)
    angle = torch.deg2rad(per_particle(params.defocus_angle))
    defocus = 0.5 * (du + dv) + 0.5 * (du - dv) * torch.cos(2 * (azimuth - angle))
    cs = per_particle(params.cs) * 1e7  # mm -> A
    q0 = per_particle(params.amplitude_contrast)
    # chi = pi lambda dz s^2 - pi/2 Cs lambda^3 s^4 + phase shift; amplitude contrast as a phase
    chi = (
        math.pi * lam * defocus * s2
        - 0.5 * math.pi * cs * lam**3 * s2**2
        + torch.deg2rad(per_particle(params.phase_shift))
        + torch.atan(q0 / torch.sqrt(1 - q0**2))
    )
    ctf = torch.sin(chi) * per_particle(params.scale)
    bfac = per_particle(params.bfactor)
    return ctf * torch.exp(-bfac * s2 / 4)
