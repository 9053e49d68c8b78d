"""The drivers' inputs: refusals of those that cannot work (each before a run folder is touched),
and the fingerprints that name a run's inputs in its folder (run_folder.py)."""

from __future__ import annotations

import torch

from .particles import Particles
from .run_folder import file_fingerprint, table_fingerprint, tensor_fingerprint


def check_reference(reference: torch.Tensor, reference_apix: float, particles: Particles, use: str) -> None:
    """A reference map (n, n, n) must match the particles' box and pixel size and hold something:
    `use` ends the refusal of an empty one ("align the particles to")."""
    n, apix = particles.image_size, particles.pixel_size
    if reference.shape[-1] != n:
        raise ValueError(f"reference is {reference.shape[-1]} px, the particles {n} px: resample it first")
    if abs(reference_apix - apix) > 1e-3 * apix:
        raise ValueError(
            f"reference pixel size {reference_apix:.4f} A differs from the particles' {apix:.4f} A"
        )
    if not reference.abs().max() > 0:
        raise ValueError(f"reference is all zeros: it holds no structure to {use}")


def check_classes(particles: Particles, k: int) -> None:
    """A classification needs 1 to N classes of N particles, and their CTF."""
    if k < 1 or k > len(particles):
        raise ValueError(f"{particles.source}: cannot make {k} classes from {len(particles)} particles")
    if not particles.has_ctf():
        raise ValueError(
            f"{particles.source}: particles need CTF columns (rlnDefocusU, rlnDefocusV, rlnDefocusAngle)"
        )


def input_fingerprints(
    particles: Particles,
    reference: torch.Tensor | None = None,
    *,
    mask: str | None = None,
    blush_weights: str | None = None,
) -> dict[str, str]:
    """The fingerprints of a run's inputs, by name: the particle rows, and the reference map, the mask
    file and the denoiser's weights file where given."""
    inputs = {"particle rows": table_fingerprint(particles.table)}
    if reference is not None:
        inputs["reference"] = tensor_fingerprint(reference)
    for name, path in (("mask", mask), ("Blush weights", blush_weights)):
        if path:
            inputs[name] = file_fingerprint(path)
    return inputs
