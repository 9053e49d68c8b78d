"""Train the Blush denoiser on half-map pairs simulated from atomic models (--models: random
resolution between --res-min and --res-max, misalignment blur, voxel sizes between --voxel-min
and --voxel-max, random blocks and rotations), or fine-tune trained weights (--init, default the
shipped ones) on your own refinements' half maps (--pairs H1 H2 [H1 H2 ...]: noise2noise, one half
in, the other as target). Writes the weights (safetensors, with voxel sizes and shape as metadata)
and a JSON log of the settings and the loss per step beside them, with the loss on a fixed
validation set every --validate-every steps (drawn once, from seeds no training sample uses, or
from --validation-models, models never trained on). Under torchrun or srun the ranks share each
step's batch (data-parallel; training.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..blush.denoiser import load_denoiser
from ..blush.training import VALIDATION_VIEWS_KEY, TrainSettings, model_sampler, pair_sampler, train
from ..distributed import start, stop
from .options import add_settings, positive, settings_from

MODEL_SUFFIXES = (".pdb", ".pdb.gz", ".cif", ".cif.gz", ".ent", ".ent.gz")


def add_args(p):
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--models", nargs="+", help="atomic models, or folders of them")
    data.add_argument(
        "--pairs", nargs="+", help="half maps, two by two (half1 half2 half1 half2 ...), to fine-tune on"
    )
    p.add_argument("--init", help="weights to start from (default with --pairs: the shipped weights)")
    p.add_argument(
        "--diameter", type=positive, help="with --pairs: particle diameter, A (default: 90%% of the box)"
    )
    p.add_argument(
        "--exclude",
        nargs="*",
        default=[],
        help="model names to leave out (file names without extension), e.g. a validation split",
    )
    p.add_argument(
        "--validation-models",
        nargs="+",
        default=[],
        help="with --models: atomic models, or folders of them, never trained on, to draw the validation "
        "set from (default: the training models, with seeds of its own)",
    )
    groups = add_settings(p, TrainSettings)
    # by hand: --dim takes the integers 2 and 3 (option()'s choices are words), --workers is no setting
    groups["network"].add_argument(
        "--dim",
        type=int,
        choices=[2, 3],
        default=TrainSettings.dim,
        help="3: the map denoiser; 2: the image denoiser for 2D class averages, trained on projections "
        "(%(default)s)",
    )
    groups["optimisation"].add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes simulating the batches ahead (%(default)s: in this one, the shipped weights' "
        "recipe); with N > 0, or several ranks, every sample has its own seed, the same for any N and "
        "any number of ranks",
    )


def name(model: Path) -> str:
    """A model's name: its file name without extension(s), as --exclude takes it."""
    return model.name.split(".")[0]


def model_files(paths: list) -> list[Path]:
    """Atomic model files: those given, and those in the folders given."""
    files: list[Path] = []
    for path in map(Path, paths):
        files += (
            sorted(p for p in path.iterdir() if p.name.endswith(MODEL_SUFFIXES)) if path.is_dir() else [path]
        )
    return files


def model_data(args, s: TrainSettings, world):
    """--models: the training models, their sampler, the validation models and the validation set's
    sampler."""
    sources = [m for m in model_files(args.models) if name(m) not in set(args.exclude)]
    if not sources:
        raise ValueError(f"no atomic models in {' '.join(args.models)}")
    sample = model_sampler(sources, s, views_seeded=args.workers > 0 or world.size > 1)
    validation_models = model_files(args.validation_models) if args.validation_models else []
    if args.validation_models and not validation_models:
        raise ValueError(f"no atomic models in {' '.join(args.validation_models)}")
    trained = sorted({name(m) for m in sources} & {name(m) for m in validation_models})
    if trained:
        raise ValueError(f"--validation-models {' '.join(trained)}: also trained on (see --exclude)")
    validation = sample
    if validation_models:
        validation = model_sampler(validation_models, s, views_seeded=True)
    elif args.dim == 2 and s.validation_samples:
        # views of its own, so that drawing the set leaves the training's views as they were
        validation = model_sampler(sources, s, views_seeded=True, views_key=VALIDATION_VIEWS_KEY)
    return sources, sample, validation_models, validation


def main(args):
    world, device = start(args.device)  # under torchrun or srun: one rank of several
    try:
        run(args, world, device)
    finally:
        stop()


def run(args, world, device):
    s = settings_from(TrainSettings, args, device=device)
    init = None
    if args.init or args.pairs:
        base = load_denoiser(
            args.init, dim=args.dim
        )  # the architecture and voxel range come with the weights
        init = base.net.state_dict()
        s = replace(
            s,
            depth=base.net.depth,
            width=base.net.widths[0],
            layout=base.net.layout,
            block=base.block,
            voxel_min=base.voxel_min,
            voxel_max=base.voxel_max,
        )
    if args.voxel_max < args.voxel_min:
        raise ValueError(f"--voxel-max {args.voxel_max} is below --voxel-min {args.voxel_min}")
    if args.workers < 0:
        raise ValueError(f"--workers {args.workers}: a count >= 0")
    if s.block % 2**s.depth:
        raise ValueError(f"--block {s.block} must be divisible by 2^depth = {2**s.depth}")
    if args.pairs:
        if args.dim == 2:
            raise ValueError("--pairs fine-tunes the map denoiser (--dim 3); the 2D one trains on --models")
        if len(args.pairs) % 2:
            raise ValueError(f"--pairs takes half maps two by two; {args.pairs[-1]} has no partner")
        if args.validation_models:
            raise ValueError("--validation-models goes with --models; --pairs validates on its own pairs")
        pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
        s = replace(s, mask_loss_weight=0.0)  # half maps carry no solvent-mask truth
        sources, sample = args.pairs, pair_sampler(pairs, s, args.diameter)
        validation_models, validation = [], sample
    else:
        sources, sample, validation_models, validation = model_data(args, s, world)
    log, _ = world.voice(print, progress=False)
    record = train(
        sample,
        s,
        args.out,
        sources,
        log=log,
        init=init,
        workers=args.workers,
        world=world,
        validation_sample=validation,
        validation_sources=validation_models,
    )
    log(
        f"trained on {len(sources)} {'half maps' if args.pairs else 'models'} in {record['seconds']:.0f} s "
        f"-> {args.out}"
    )
