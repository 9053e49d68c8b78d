"""Reconstruct a map from particles with known poses (as relion_reconstruct): CTF-weighted
back-projection of each random half set, FSC between the halves, and a Wiener-filtered map from
all particles whose SSNR comes from that FSC. Also writes the half maps and a JSON summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..fsc import resolution_at
from ..mrc import write_map
from ..option import option
from ..particles import Particles
from ..reconstruct import reconstruct_particles
from .options import add_settings, settings_from


@dataclass(frozen=True)
class ReconstructSettings:
    """reconstruct_particles' settings (its keywords), each declared once, for the command line."""

    symmetry: str = option("C1", "point group: C<n>, D<n>, T, O, I (RELION settings)", kind="str", flag="sym")
    ctf: bool = option(True, "images are not CTF-affected", kind="flag", flag="no-ctf")
    wiener: bool = option(
        True, "divide by the weights only (no SSNR regularisation)", kind="flag", flag="no-wiener"
    )
    pad: int = option(2, "padding factor of the Fourier volume", kind="count")
    batch_size: int = option(256, "images per batch (bounds memory)", kind="count", flag="batch")
    device: str = option("cpu", "cpu or cuda:N", kind="str")


def add_args(p):
    p.add_argument("--particles", required=True, help="RELION STAR file with poses (rlnAngleRot/Tilt/Psi)")
    p.add_argument("--out", required=True, help="output map (.mrc)")
    add_settings(p, ReconstructSettings)


def main(args):
    particles = Particles.read(args.particles)
    s = settings_from(ReconstructSettings, args)
    rec = reconstruct_particles(particles, **asdict(s), progress=True)
    out = Path(args.out)
    stem = out.with_suffix("")
    write_map(out, rec.volume, rec.pixel_size)
    write_map(f"{stem}_half1_unfil.mrc", rec.half1, rec.pixel_size)
    write_map(f"{stem}_half2_unfil.mrc", rec.half2, rec.pixel_size)
    n = rec.volume.shape[-1]
    summary = {
        "particles": len(particles),
        "box": n,
        "pixel_size": rec.pixel_size,
        "symmetry": s.symmetry,
        "half_map_resolution_0143": resolution_at(rec.fsc, 0.143, n, rec.pixel_size),
        "half_map_resolution_05": resolution_at(rec.fsc, 0.5, n, rec.pixel_size),
        "fsc_halves": [round(float(x), 5) for x in rec.fsc],
    }
    with atomic_path(f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    print(
        f"reconstructed {len(particles)} particles -> {out}; half-map FSC 0.143: "
        f"{summary['half_map_resolution_0143']:.2f} A"
    )
