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
from .options import count, non_negative, positive

GRAD_ITERATIONS = 200  # RELION's default number of VDAM mini-batches


def add_args(p):
    d = Class2DSettings()
    p.add_argument("--particles", required=True, help="RELION STAR file of particles with CTF")
    p.add_argument("--k", type=count, default=d.classes, help="number of classes (%(default)s)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--iter", type=count, help=f"iterations ({d.iterations}; {GRAD_ITERATIONS} with --grad)")
    p.add_argument(
        "--diameter", type=positive, help="particle diameter in A for the masks (default: 90%% of the box)"
    )
    p.add_argument(
        "--psi-step", type=positive, default=d.psi_step, help="in-plane angular step, degrees (%(default)s)"
    )
    p.add_argument(
        "--offset-range",
        type=non_negative,
        default=d.offset_range,
        help="translation search range, px (%(default)s)",
    )
    p.add_argument(
        "--offset-step", type=positive, default=d.offset_step, help="translation step, px (%(default)s)"
    )
    p.add_argument(
        "--tau2-fudge",
        type=positive,
        default=d.tau2_fudge,
        help="regularisation parameter T: higher trusts the data more (%(default)s)",
    )
    p.add_argument(
        "--ini-high",
        type=positive,
        default=d.ini_high,
        help="first iteration's resolution limit, A (%(default)s)",
    )
    p.add_argument("--highres", type=positive, help="never use data beyond this resolution, A")
    p.add_argument("--no-center", action="store_true", help="do not re-centre the class averages")
    p.add_argument("--batch", type=count, default=d.batch_size, help="images per E-step batch (%(default)s)")
    p.add_argument("--device", default=d.device, help="cpu or cuda:N (%(default)s)")
    p.add_argument(
        "--seed", type=int, default=d.seed, help="random seed of the initial classes (%(default)s)"
    )
    p.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="resume from the last finished iteration (refused where the folder holds another run)",
    )
    p.add_argument("--overwrite", action="store_true", help="clear another run's outputs from --out first")
    p.add_argument(
        "--blush",
        action="store_true",
        help="Blush for 2D: each class average is denoised by the 2D denoiser and trailed at its resolution",
    )
    p.add_argument(
        "--blush-weights", help="2D denoiser weights (.safetensors); default: those shipped with this package"
    )
    p.add_argument(
        "--grad",
        action="store_true",
        help=(
            "mini-batches for large sets (RELION's VDAM schedule as online EM); the last iteration "
            "uses every particle"
        ),
    )
    p.add_argument(
        "--grad-ini-subset",
        type=count,
        help="particles per mini-batch at first (default: 0.5%% of the set, 200 to 5,000)",
    )
    p.add_argument(
        "--grad-fin-subset",
        type=count,
        help="particles per mini-batch at the end (default: 10%% of the set, 1,000 to 50,000)",
    )


def main(args):
    world, device = start(args.device)  # under torchrun or srun: one rank of several
    iterations = args.iter or (GRAD_ITERATIONS if args.grad else Class2DSettings.iterations)
    settings = Class2DSettings(
        classes=args.k,
        iterations=iterations,
        psi_step=args.psi_step,
        offset_range=args.offset_range,
        offset_step=args.offset_step,
        tau2_fudge=args.tau2_fudge,
        diameter=args.diameter,
        ini_high=args.ini_high,
        highres=args.highres,
        center_classes=not args.no_center,
        batch_size=args.batch,
        device=device,
        seed=args.seed,
        blush=args.blush,
        blush_weights=args.blush_weights,
        grad=args.grad,
        grad_ini_subset=args.grad_ini_subset,
        grad_fin_subset=args.grad_fin_subset,
    )
    try:
        classify(
            Particles.read(args.particles),
            settings,
            args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            world=world,
        )
    finally:
        stop()
