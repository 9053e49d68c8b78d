"""Simulate particle images from an atomic model: random uniform poses and shifts, per-micrograph
defocus with astigmatism, RELION's CTF, Gaussian noise at a given SNR. Writes particles.star (no
poses), particles.mrcs, truth.mrc, truth.star (true poses) and summary.json into --out."""

from __future__ import annotations

from ..simulate import SimulationSettings, simulate_from_model
from .options import add_settings, settings_from


def add_args(p):
    p.add_argument("--model", required=True, help="atomic model (PDB or mmCIF, may be gzipped)")
    p.add_argument("--out", required=True, help="output directory")
    add_settings(p, SimulationSettings)
    # by hand: one flag, two values, for defocus_min and defocus_max
    p.add_argument(
        "--defocus",
        type=float,
        nargs=2,
        default=(SimulationSettings.defocus_min, SimulationSettings.defocus_max),
        metavar=("MIN", "MAX"),
        help="defocus range in A (%(default)s)",
    )


def main(args):
    s = settings_from(SimulationSettings, args, defocus_min=args.defocus[0], defocus_max=args.defocus[1])
    if s.n_particles < 1 or s.box < 8 or s.box % 2 or s.pixel_size <= 0 or s.snr <= 0:
        raise ValueError("need --n >= 1, an even --box >= 8, --apix > 0 and --snr > 0")
    summary = simulate_from_model(args.model, s, args.out, progress=True)
    print(
        f"simulated {s.n_particles} particles of {s.box} px at {s.pixel_size} A/px, SNR {s.snr} "
        f"-> {args.out}/particles.star, truth.mrc, truth.star (noise sigma {summary['noise_sigma']:.4g})"
    )
