"""Gold-standard 3D auto-refinement (as relion_refine --auto_refine --split_random_halves):
E-step over HEALPix orientations x translations with a Gaussian noise model, posterior-weighted
back-projection into two half sets, tau2 from their FSC, auto-sampling until convergence.
Writes run_data.star, run_class001.mrc, run_half{1,2}_class001_unfil.mrc, run_model.star,
summary.json and a checkpoint per iteration (run_itNNN_*); --continue resumes from the last.
Under `torchrun --nproc-per-node N --no-python blush refine3d ...` (or srun) the ranks share the
particles (gloo on CPUs, NCCL on GPUs, --device cuda meaning each rank's own) and rank 0 writes.
With --blush each half set's reference is its denoised reconstruction, trailed to the FSC = 1/7
shell, from the iteration the resolution reaches --blush-from-resolution on, and
run_class001_blush.mrc (the denoised final map) is written beside run_class001.mrc."""

from __future__ import annotations

from collections.abc import Callable

from ..distributed import start, stop
from ..mrc import read_map
from ..particles import Particles
from ..refine3d import RefineSettings, refine
from ..run_folder import RunControl
from .options import add_run_flags, add_settings, settings_from


def add_args(p):
    p.add_argument("--particles", required=True, help="RELION STAR file of particles with CTF")
    p.add_argument("--ref", required=True, help="initial reference map (.mrc), same box and pixel size")
    p.add_argument("--out", required=True, help="output directory")
    add_run_flags(p)
    add_settings(p, RefineSettings)


def main(args):
    if args.max_order is not None and args.max_order < args.healpix_order:
        raise ValueError(f"--max-order {args.max_order} is coarser than --healpix-order {args.healpix_order}")
    run_on_reference(refine, RefineSettings, args)


def run_on_reference(driver: Callable[..., dict], settings_class: type, args) -> None:
    """refine3d's and class3d's run: `driver` on --particles from --ref into --out, under torchrun or
    srun as one rank of several; an error of the reference's is named by its file."""
    particles = Particles.read(args.particles)
    reference, ref_apix = read_map(args.ref)
    world, device = start(args.device)  # under torchrun or srun: one rank of several
    try:
        driver(
            particles,
            reference,
            ref_apix,
            settings_from(settings_class, args, device=device),
            args.out,
            RunControl(resume=args.resume, overwrite=args.overwrite, world=world),
        )
    except ValueError as e:
        raise ValueError(f"{args.ref}: {e}" if str(e).startswith("reference") else str(e)) from e
    finally:
        stop()
