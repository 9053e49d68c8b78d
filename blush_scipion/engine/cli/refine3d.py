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

from ..distributed import start, stop
from ..mrc import read_map
from ..particles import Particles
from ..refine3d import RefineSettings, refine
from .options import count, non_negative, order, positive


def add_args(p):
    d = RefineSettings()
    p.add_argument("--particles", required=True, help="RELION STAR file of particles with CTF")
    p.add_argument("--ref", required=True, help="initial reference map (.mrc), same box and pixel size")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--diameter",
        type=positive,
        help="particle diameter in A for the solvent mask (default: 90%% of the box)",
    )
    p.add_argument("--mask", help="solvent mask (.mrc, values 0..1) instead of the spherical one")
    p.add_argument(
        "--sym", default=d.symmetry, help="point group: C<n>, D<n>, T, O, I (RELION settings) (%(default)s)"
    )
    p.add_argument(
        "--ini-high",
        type=positive,
        default=d.ini_high,
        help="low-pass of the initial reference, A (%(default)s)",
    )
    p.add_argument(
        "--join-halves-below",
        type=positive,
        default=d.join_halves_below,
        help="halves share their data below this resolution, A (%(default)s)",
    )
    p.add_argument(
        "--healpix-order",
        type=order,
        default=d.healpix_order,
        help="initial angular sampling: order k gives 60/2^k degrees (%(default)s: 15 deg)",
    )
    p.add_argument(
        "--local-from-order",
        type=order,
        default=d.local_from_order,
        help="local searches around the previous pose from this order on (%(default)s)",
    )
    p.add_argument(
        "--max-order",
        type=order,
        default=d.max_order,
        help="finest angular sampling order (default: none; the sampling gets finer until its step is "
        "under 75%% of the accuracy the data allow, RELION's rule)",
    )
    p.add_argument(
        "--oversampled-cells",
        type=count,
        default=d.oversampled_cells,
        help="local searches: at most this many significant coarse cells per image are sampled at "
        "the fine step (%(default)s)",
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
    p.add_argument("--max-iter", type=count, default=d.max_iterations, help="iteration cap (%(default)s)")
    p.add_argument(
        "--batch",
        type=count,
        default=d.batch_size,
        help="images per E-step batch at most (%(default)s; fewer where --memory-gb needs it)",
    )
    p.add_argument(
        "--memory-gb",
        type=positive,
        default=d.memory_gb,
        help="memory the E-step's batches may take, GB (default: half of the device's free memory)",
    )
    p.add_argument("--device", default=d.device, help="cpu or cuda:N (%(default)s)")
    p.add_argument(
        "--seed", type=int, default=d.seed, help="random seed for the half-set split (%(default)s)"
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
        help="Blush regularization: each half's reference is its denoised reconstruction",
    )
    p.add_argument(
        "--blush-weights",
        help="denoiser weights (.safetensors, or RELION's blush_v1.0.ckpt[.gz]); "
        "default: the weights shipped with this package",
    )
    p.add_argument(
        "--blush-skip-spectral-trailing",
        action="store_true",
        help="use the denoised map at all resolutions (inflates the gold-standard FSC; for tests)",
    )
    p.add_argument(
        "--blush-trailing-fill",
        choices=["wiener", "zero"],
        default="wiener",
        help="above the trailing edge each half's reference is its tau2-regularised (Wiener) map "
        "(%(default)s; measured better at low SNR) or zero (RELION 5)",
    )
    p.add_argument(
        "--blush-from-resolution",
        type=non_negative,
        default=d.blush_from_resolution,
        help="Blush's references start once the gold-standard resolution reaches this, A "
        "(%(default)s: the coarsest the shipped denoiser was trained on; 0: from the first "
        "iteration, as RELION 5)",
    )


def main(args):
    if args.max_order is not None and args.max_order < args.healpix_order:
        raise ValueError(f"--max-order {args.max_order} is coarser than --healpix-order {args.healpix_order}")
    particles = Particles.read(args.particles)
    reference, ref_apix = read_map(args.ref)
    world, device = start(args.device)  # under torchrun or srun: one rank of several
    settings = RefineSettings(
        diameter=args.diameter,
        symmetry=args.sym,
        ini_high=args.ini_high,
        join_halves_below=args.join_halves_below,
        healpix_order=args.healpix_order,
        local_from_order=args.local_from_order,
        max_order=args.max_order,
        oversampled_cells=args.oversampled_cells,
        offset_range=args.offset_range,
        offset_step=args.offset_step,
        max_iterations=args.max_iter,
        batch_size=args.batch,
        memory_gb=args.memory_gb,
        device=device,
        seed=args.seed,
        mask=args.mask,
        blush=args.blush,
        blush_weights=args.blush_weights,
        blush_trailing=not args.blush_skip_spectral_trailing,
        blush_fill=args.blush_trailing_fill == "wiener",
        blush_from_resolution=args.blush_from_resolution,
    )
    try:
        refine(
            particles,
            reference,
            ref_apix,
            settings,
            args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            world=world,
        )
    except ValueError as e:
        raise ValueError(f"{args.ref}: {e}" if str(e).startswith("reference") else str(e)) from e
    finally:
        stop()
