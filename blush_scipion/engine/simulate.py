"""Synthetic particle data sets: projections of a map at random poses, with CTF and noise."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .atomic import atomic_path
from .ctf import CtfParameters, compute_ctf_2d
from .density import density_from_model
from .fourier import irfft2_centered, phase_shift_2d
from .mrc import write_map, write_stack
from .option import option
from .particles import Particles
from .projector import SlicePoints, extract_central_slices, fourier_reference
from .rotation import random_rotations


@dataclass(frozen=True)
class SimulationSettings:
    n_particles: int = option(2000, "number of particles", kind="count", flag="n")
    box: int = option(64, "image size in pixels", kind="count")
    pixel_size: float = option(2.0, "pixel size", kind="positive", unit="A", flag="apix")
    snr: float = option(
        0.1,
        "signal-to-noise ratio: variance of the noise-free CTF-modulated image over the noise variance, "
        "whole box",
        kind="positive",
    )
    bfactor: float = option(30.0, "B-factor of the density", kind="non_negative", unit="A^2")
    # A, per micrograph, uniform; their flag, --defocus MIN MAX, is written in cli/simulate.py
    defocus_min: float = 10000.0
    defocus_max: float = 25000.0
    astigmatism: float = 400.0  # A, largest defocus U - V
    max_shift: float = option(6.0, "largest origin shift per axis", kind="non_negative", unit="A")  # uniform
    particles_per_micrograph: int = 100
    voltage: float = 300.0  # kV
    cs: float = 2.7  # mm
    amplitude_contrast: float = 0.1
    seed: int = option(0, "random seed", kind="int")


def draw_particles(s: SimulationSettings, generator: torch.Generator) -> pd.DataFrame:
    """Random poses, origins and CTF parameters (RELION columns) for s.n_particles particles."""
    n = s.n_particles
    angles = random_rotations(n, generator).double().numpy()
    shifts = (2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1).numpy() * s.max_shift
    n_mics = -(-n // s.particles_per_micrograph)
    mic_defocus = s.defocus_min + (s.defocus_max - s.defocus_min) * torch.rand(
        n_mics, generator=generator, dtype=torch.float64
    )
    mic = np.arange(n) // s.particles_per_micrograph
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64).numpy()
    defocus = mic_defocus.numpy()[mic] + 200 * (2 * u[:, 0] - 1)  # particle height in the ice
    astig = s.astigmatism * u[:, 1]
    return pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
            "rlnMicrographName": [f"mic{m + 1:05d}.mrc" for m in mic],
            "rlnOpticsGroup": 1,
            "rlnDefocusU": defocus + astig / 2,
            "rlnDefocusV": defocus - astig / 2,
            "rlnDefocusAngle": 180 * u[:, 2] - 90,
            "rlnPhaseShift": 0.0,
            "rlnCtfBfactor": 0.0,
            "rlnAngleRot": angles[:, 0],
            "rlnAngleTilt": angles[:, 1],
            "rlnAnglePsi": angles[:, 2],
            "rlnOriginXAngst": shifts[:, 0],
            "rlnOriginYAngst": shifts[:, 1],
        }
    )


def optics_table(s: SimulationSettings) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnAmplitudeContrast": [s.amplitude_contrast],
            "rlnSphericalAberration": [s.cs],
            "rlnVoltage": [s.voltage],
            "rlnImagePixelSize": [s.pixel_size],
            "rlnImageSize": [s.box],
            "rlnImageDimensionality": [2],
        }
    )


def project_particles(
    reference: torch.Tensor,
    rotations: torch.Tensor,
    origins: torch.Tensor,
    ctf: CtfParameters | None,
    n: int,
    pixel_size: float,
    pad: int = 2,
) -> torch.Tensor:
    """Noise-free particle images: (m,)*3 Fourier reference -> (B, n, n).

    rotations: (B, 3, 3); origins: (B, 2) RELION origins in pixels (the particle lands at centre - origin).
    """
    points = SlicePoints.within(n, device=reference.device)
    ft = points.scatter(extract_central_slices(reference, rotations, points, pad))
    ft = phase_shift_2d(ft, -origins, n)
    if ctf is not None:
        ft = ft * compute_ctf_2d(ctf, n, pixel_size)
    return irfft2_centered(ft, n)


def simulate(
    volume: torch.Tensor,
    s: SimulationSettings,
    out_dir: str | Path,
    batch_size: int = 500,
    *,
    progress: bool = False,
    extra_summary: dict | None = None,
) -> dict:
    """Write particles.star (no poses), particles.mrcs, truth.mrc, truth.star and summary.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(s.seed)
    table = draw_particles(s, g)
    truth = Particles(table, optics_table(s), out, str(out / "truth.star"))
    reference = fourier_reference(volume)

    def clean(rows):
        sub = truth.subset(rows)
        return project_particles(reference, sub.rotations(), sub.origins(), sub.ctf(), s.box, s.pixel_size)

    pilot = clean(np.arange(min(s.n_particles, 500)))
    signal_variance = float(pilot.var(dim=(-2, -1)).mean())
    sigma = (signal_variance / s.snr) ** 0.5

    def batches():
        for start in tqdm(
            range(0, s.n_particles, batch_size), desc="simulating", unit="batch", disable=not progress
        ):
            rows = np.arange(start, min(start + batch_size, s.n_particles))
            images = clean(rows)
            yield images + sigma * torch.randn(images.shape, generator=g)

    write_stack(out / "particles.mrcs", batches(), s.pixel_size, n_images=s.n_particles)
    write_map(out / "truth.mrc", volume, s.pixel_size)
    truth.write(out / "truth.star")
    pose_columns = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
    Particles(table.drop(columns=pose_columns), truth.optics, out).write(out / "particles.star")
    summary = {
        **asdict(s),
        **(extra_summary or {}),
        "signal_variance": signal_variance,
        "noise_sigma": sigma,
        "files": {
            "particles": "particles.star",
            "stack": "particles.mrcs",
            "truth_map": "truth.mrc",
            "truth_particles": "truth.star",
        },
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


def simulate_from_model(model: str | Path, s: SimulationSettings, out_dir: str | Path, **kwargs) -> dict:
    """simulate() on the density of an atomic model (see density_from_model)."""
    volume = density_from_model(model, s.box, s.pixel_size, s.bfactor)
    return simulate(volume, s, out_dir, extra_summary={"model": str(model)}, **kwargs)
