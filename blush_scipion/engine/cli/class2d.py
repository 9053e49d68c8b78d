"""2D classification (as relion_refine without --auto_refine on 2D references): EM over classes x
in-plane angles x translations with a Gaussian noise model, CTF-weighted class averages,
tau2 regularisation from each class's power spectrum, classes masked and re-centred.
Writes run_classes.mrcs (the class averages), run_data.star (rlnClassNumber, rlnAnglePsi,
rlnOriginX/YAngst, rlnMaxValueProbDistribution), run_model.star (class distribution and
resolution), summary.json, and RELION's run_itNNN_* files per iteration; --continue resumes.
With --blush each class's reference for the next iteration is its average denoised by a 2D U-Net
(RELION has no Blush in 2D), low-passed at the class's resolution with the regularised average above
it; run_classes.mrcs keeps the regularised averages, run_classes_blush.mrcs holds Blush's references.
With --grad each iteration visits a mini-batch (RELION 4's VDAM schedule), the last one all particles."""

from __future__ import annotations

from ..classify2d import Class2DSettings, classify
from ..distributed import start, stop
from ..particles import Particles
from ..run_folder import RunControl
from .options import add_run_flags, add_settings, count, settings_from

GRAD_ITERATIONS = 200  # RELION's default number of VDAM mini-batches


def add_args(p):
    p.add_argument("--particles", required=True, help="RELION STAR file of particles with CTF")
    p.add_argument("--out", required=True, help="output directory")
    add_run_flags(p)
    groups = add_settings(p, Class2DSettings)
    # by hand: its default depends on --grad, so the flag has none of its own
    groups["classification"].add_argument(
        "--iter",
        type=count,
        help=f"iterations ({Class2DSettings.iterations}; {GRAD_ITERATIONS} with --grad)",
    )


def main(args):
    world, device = start(args.device)  # under torchrun or srun: one rank of several
    iterations = args.iter or (GRAD_ITERATIONS if args.grad else Class2DSettings.iterations)
    settings = settings_from(Class2DSettings, args, iterations=iterations, device=device)
    try:
        classify(
            Particles.read(args.particles),
            settings,
            args.out,
            RunControl(resume=args.resume, overwrite=args.overwrite, world=world),
        )
    finally:
        stop()
