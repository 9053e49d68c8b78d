"""Training the denoiser on half maps simulated from atomic models (halfmaps.py).

Each sample: a model's density, Fourier-resampled to a random voxel size within the denoiser's
range, one half map of a simulated pair (random resolution and misalignment blur; sometimes
cut off a few shells past its resolution, as an E-step limited to the current resolution
leaves it), the two input channels, and as target the truth in the input's normalised units;
a random block around the particle, randomly rotated by 90 degrees. Loss: squared error inside
the particle mask, plus the solvent-mask logit's binary cross-entropy against the thresholded
truth (weight 0.1). The squared error is relative to the target's power, so that sharp and
blurred, high- and low-contrast samples weigh alike.

The 2D denoiser (dim=2, for class averages) trains alike on projections: the truth projected
along a random direction, one half of a simulated pair of its images (halfmaps.py in 2D), the
truth's projection as target; random crops, rotations by 90 degrees and mirror images.

Fine-tuning on a user's own half-map pairs (pair_sampler) is noise2noise: one half in, the other
as target, starting from trained weights.

Under torch.distributed (distributed.start: torchrun, srun) the training is data-parallel: each
rank simulates its share of every step's batch, DistributedDataParallel averages the gradients
(every rank then takes the same step), and rank 0 writes the weights and the log. Each sample has
its own seed there (StepBatches), so N ranks give the single-process run with worker processes
(`workers` >= 1) up to summation order.

Validation: a fixed set of samples (validation_set), drawn once at the start from keys of their
own (seed, VALIDATION_KEY, i), which no training step's sample uses, or from models never trained
on; its mean loss, the training loss's function with the network in eval mode, is logged at step 0
and every `validate_every` steps. Under torch.distributed each rank draws and evaluates its share
of the set and the sums are all-reduced: the value a single process gives.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..atomic import atomic_path
from ..density import density_from_model, model_centre, read_model
from ..distributed import World
from ..fourier import cosine_low_pass, resize_fourier, resize_fourier_3d
from ..mask import circular_mask, spherical_mask
from ..option import option
from ..rotation import euler_to_matrix, random_rotations
from . import TRAINED_RESOLUTION_MAX
from .denoiser import grid_in_range
from .features import denoiser_inputs, standardise
from .halfmaps import simulate_half_maps
from .model import BlushUNet

TRUTH_BFACTOR = 20.0  # A^2: targets as sharp as a good map, not point atoms
PROJECTIONS_PER_MODEL = 32  # 2D: views per model (each sample adds its own noise, crop, turn and mirror)
# generator keys after the seed: StepBatches' samples (seed, 0, step, i), 2D views (seed, 1, i, j);
# the validation samples (seed, VALIDATION_KEY, i) and their 2D views (seed, VALIDATION_VIEWS_KEY, i, j)
VALIDATION_KEY, VALIDATION_VIEWS_KEY = 2, 3


@dataclass(frozen=True)
class TrainSettings:
    depth: int = option(4, "U-Net pooling steps", kind="count", group="network")
    width: int = option(8, "channels of the first level", kind="count", group="network")
    block: int = option(48, "block size in voxels", kind="count", group="network")
    # maps are resampled into [voxel_min, voxel_max]
    voxel_min: float = option(
        1.5, "finest voxel size the denoiser works at", kind="positive", unit="A", group="training data"
    )
    voxel_max: float = option(
        3.0,
        "coarsest voxel size; samples are drawn in between",
        kind="positive",
        unit="A",
        group="training data",
    )
    steps: int = option(4000, "optimiser steps", kind="count", group="optimisation")
    batch_size: int = option(
        2,
        "blocks per step, shared among the ranks under torchrun",
        kind="count",
        flag="batch",
        group="optimisation",
    )
    learning_rate: float = option(
        2e-3, "peak learning rate, cosine decay", kind="positive", flag="lr", group="optimisation"
    )
    resolution_min: float = option(  # never finer than 2.5 voxels
        3.0, "best half-map resolution", kind="positive", unit="A", flag="res-min", group="training data"
    )
    resolution_max: float = option(
        TRAINED_RESOLUTION_MAX,
        "worst half-map resolution",
        kind="positive",
        unit="A",
        flag="res-max",
        group="training data",
    )
    cutoff_fraction: float = 0.25  # samples with nothing past a shell beyond their resolution
    blur_max: float = 150.0
    mask_loss_weight: float = 0.1  # solvent-mask logit (0 when fine-tuning on half maps)
    layout: str = "symmetric"  # model.LAYOUTS
    dim: int = 3  # 3: maps; 2: images (class averages); its flag, --dim 2|3, is written in cli/train.py
    seed: int = option(0, "random seed", kind="int", group="optimisation")
    device: str = option(
        "cpu",
        "cpu or cuda:N (%(default)s); under torchrun or srun, cuda is cuda:LOCAL_RANK",
        kind="str",
        group="optimisation",
    )
    validation_samples: int = option(
        8,
        "size of the fixed validation set, drawn once from seeds no training sample uses (0: none)",
        kind="order",
        group="validation",
    )
    validate_every: int = option(
        0,
        "optimiser steps between validation losses (0: at each progress line, a twentieth)",
        kind="order",
        group="validation",
    )


def model_truth(path, voxel_size: float, block: int) -> tuple[torch.Tensor, float]:
    """A model's density in the smallest even box that holds it (at least `block`), and its radius
    (voxels)."""
    st = read_model(path)
    xyz = np.array([cra.atom.pos.tolist() for cra in st[0].all()])
    radius = float(np.linalg.norm(xyz - xyz.mean(0), axis=1).max()) / voxel_size
    box = max(2 * math.ceil(block / 2), 2 * math.ceil(radius + 6))
    return density_from_model(path, box, voxel_size, bfactor=TRUTH_BFACTOR, centre=model_centre(path)), radius


def training_sample(truth: torch.Tensor, radius: float, s: TrainSettings, g: torch.Generator):
    """(n, n, n) truth at voxel_min -> inputs (2, b, b, b), target (b, b, b), mask (b, b, b),
    solvent label (b, b, b); for the 2D denoiser an (n, n) truth projection gives (2, b, b) and
    (b, b) alike."""
    u = torch.rand(5, generator=g).tolist()
    n0, dim = truth.shape[-1], truth.dim()
    n = max(s.block, 2 * round(n0 * s.voxel_min / (s.voxel_min + (s.voxel_max - s.voxel_min) * u[3]) / 2))
    voxel, radius = s.voxel_min * n0 / n, radius * n / n0
    truth = resize_fourier(truth, n, dim)
    best = max(s.resolution_min, 2.5 * voxel)
    resolution = best + max(0.0, s.resolution_max - best) * u[0]
    half, _ = simulate_half_maps(truth, voxel, resolution, g, blur_bfactor=s.blur_max * u[1])
    if u[4] < s.cutoff_fraction:
        half = cosine_low_pass(
            half, n * voxel / resolution * (1.1 + 0.4 * u[4] / s.cutoff_fraction), 1.0, dim=dim
        )
    mask = (spherical_mask if dim == 3 else circular_mask)(n, radius + 2, edge=5)
    inputs = denoiser_inputs(half, mask)
    _, mean, std = standardise(half)
    target = (truth - mean) / std * mask
    solvent = (truth > 0.1 * truth.max()).float()
    return random_block([inputs, target, mask, solvent], s.block, g, u[2], dim=dim)


def projection(volume: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """(n, n, n) map, (3, 3) rotation -> (n, n): the map rotated (trilinear) and summed along z."""
    n = volume.shape[-1]
    theta = torch.cat([rotation.float(), torch.zeros(3, 1)], dim=1)[None]
    grid = torch.nn.functional.affine_grid(theta, [1, 1, n, n, n], align_corners=False)
    return torch.nn.functional.grid_sample(volume[None, None], grid, align_corners=False)[0, 0].sum(0)


def random_block(volumes: list, block: int, g: torch.Generator, axis_draw: float, dim: int = 3) -> list:
    """The same random (block,)*3 crop of each (..., n, n, n) volume (whole if n <= block), rotated
    alike by a random multiple of 90 degrees about the axis that `axis_draw` in [0, 1) picks.
    dim=2: (block, block) crops of (..., n, n) images, rotated in plane and mirrored if
    `axis_draw` >= 0.5 (images have a hand; maps keep theirs)."""
    n = volumes[0].shape[-1]
    lo = torch.randint(0, n - block + 1, (dim,), generator=g).tolist() if n > block else [0] * dim
    crop = tuple(slice(a, a + block) for a in lo)
    k = int(torch.randint(0, 4, (1,), generator=g))
    if dim == 2:
        out = [torch.rot90(x[(...,) + crop], k, dims=(-2, -1)) for x in volumes]
        return [x.flip(-1) for x in out] if axis_draw >= 0.5 else out
    dims = [(1, 2), (0, 2), (0, 1)][int(axis_draw * 3) % 3]
    return [torch.rot90(x[(...,) + crop], k, dims=[d + (x.dim() - 3) for d in dims]) for x in volumes]


def generator(*key: int) -> torch.Generator:
    """A generator seeded by the non-negative integers `key` (numpy's SeedSequence: unrelated
    streams for distinct keys, whatever process draws from them)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]))


def model_sampler(
    models: list, s: TrainSettings, *, views_seeded: bool = False, views_key: int = 1
) -> Callable[[torch.Generator], list]:
    """Samples from half maps simulated from atomic models (the shipped weights' data).
    views_seeded (2D): each projection's direction from its own seed (seed, views_key, i, j) rather
    than from the stream of the sample that first uses it, so that every process (batches():
    workers, ranks) makes the same views; views_key VALIDATION_VIEWS_KEY: views of their own, along
    directions the training's (key 1) do not share, for a validation set."""
    truths = [model_truth(m, s.voxel_min, math.ceil(s.block * s.voxel_max / s.voxel_min)) for m in models]
    if s.dim == 3:
        return lambda g: training_sample(*truths[int(torch.randint(0, len(truths), (1,), generator=g))], s, g)
    # projections are the costly part: each model gets PROJECTIONS_PER_MODEL, made on first use
    views: dict = {}

    def sample_2d(g: torch.Generator):
        i, j = (int(torch.randint(0, k, (1,), generator=g)) for k in (len(truths), PROJECTIONS_PER_MODEL))
        if (i, j) not in views:
            # key: views_key after the seed (StepBatches' are 0), lest a view share a sample's stream
            direction = random_rotations(1, generator(s.seed, views_key, i, j) if views_seeded else g)[0]
            views[i, j] = projection(truths[i][0], euler_to_matrix(*direction))
        return training_sample(views[i, j], truths[i][1], s, g)

    return sample_2d


def pair_sampler(
    pairs: list, s: TrainSettings, diameter: float | None = None
) -> Callable[[torch.Generator], list]:
    """Noise2noise samples from a user's half-map pairs [(half1, half2), ...]: one half in, the
    other (in the input's units) as target. Its noise is independent, so the network learns the
    signal the halves share (Lehtinen et al. 2018). Maps go to the denoiser's voxel-size range.
    diameter: A, the particle's (default 90% of the box)."""
    from ..mrc import read_map_pair

    grids = []
    for a_path, b_path in pairs:
        a, b, apix = read_map_pair(a_path, b_path)
        n = a.shape[-1]
        m = max(s.block, grid_in_range(n, apix, s.voxel_min, s.voxel_max)[0])
        radius = (diameter or 0.9 * n * apix) / 2 / (n * apix / m)
        grids.append((resize_fourier_3d(a, m), resize_fourier_3d(b, m), spherical_mask(m, radius, edge=5)))

    def sample(g: torch.Generator) -> list:
        a, b, mask = grids[int(torch.randint(0, len(grids), (1,), generator=g))]
        u = torch.rand(2, generator=g).tolist()
        if u[0] < 0.5:
            a, b = b, a
        _, mean, std = standardise(a)
        return random_block([denoiser_inputs(a, mask), (b - mean) / std * mask, mask, mask], s.block, g, u[1])

    return sample


def relative_error(denoised: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, b, b, b) (or (B, b, b)) each -> (B,) squared error inside the mask over the target's
    power there: every sample counts alike, whatever its resolution and contrast."""
    dims = tuple(range(1, target.dim()))
    power = (target**2 * mask).sum(dims)
    return ((denoised - target) ** 2 * mask).sum(dims) / torch.maximum(power, 1e-2 * mask.sum(dims) + 1e-6)


def sample_loss(denoised, logit, target, mask, solvent, s: TrainSettings) -> torch.Tensor:
    """The training loss of a batch: the relative error's mean, plus the solvent-mask logit's
    binary cross-entropy weighted by mask_loss_weight."""
    loss = relative_error(denoised, target, mask).mean()
    if s.mask_loss_weight:
        loss = loss + s.mask_loss_weight * torch.nn.functional.binary_cross_entropy_with_logits(
            logit, solvent
        )
    return loss


def validation_set(
    sample: Callable[[torch.Generator], list], s: TrainSettings, world: World = World()
) -> list:
    """This rank's share of the validation samples: the i-th from generator(seed, VALIDATION_KEY, i),
    a key no training sample uses, so the set is the same whatever the steps, workers or ranks."""
    return [
        sample(generator(s.seed, VALIDATION_KEY, int(i)))
        for i in world.share(np.arange(s.validation_samples))
    ]


def validation_loss(net: BlushUNet, samples: list, s: TrainSettings, world: World = World()) -> float:
    """The mean training loss over the validation set (each rank holding its share, `samples`), one
    sample at a time, in eval mode without gradients; the same value on every rank."""
    total = torch.zeros((), dtype=torch.float64, device=s.device)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for inputs, target, mask, solvent in samples:
            inputs, target, mask, solvent = (x[None].to(s.device) for x in (inputs, target, mask, solvent))
            denoised, logit = net(inputs)
            total += sample_loss(denoised, logit, target, mask, solvent, s).double()
    net.train(was_training)
    world.sum(total)
    return float(total) / max(1, s.validation_samples)


def save_weights(net: BlushUNet, s: TrainSettings, out: Path) -> None:
    """Weights as safetensors, with what inference needs to know as metadata (atomically)."""
    from safetensors.torch import save_file

    meta = {
        "voxel_size": str(s.voxel_min),
        "voxel_size_max": str(s.voxel_max),
        "block_size": str(s.block),
        "depth": str(s.depth),
        "width": str(s.width),
        "layout": s.layout,
        "dim": str(s.dim),
    }
    with atomic_path(out) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta
        )


class StepBatches(torch.utils.data.Dataset):
    """Samples `rows` (default all) of step t's batch, each drawn from its own seed: the same
    samples whichever worker process or rank makes them."""

    def __init__(self, sample: Callable[[torch.Generator], list], s: TrainSettings, rows=None):
        self.sample, self.s = sample, s
        self.rows = range(s.batch_size) if rows is None else rows

    def __len__(self) -> int:
        return self.s.steps

    def __getitem__(self, step: int) -> list:
        return [self.sample(generator(self.s.seed, 0, step, int(i))) for i in self.rows]


def batches(
    sample: Callable[[torch.Generator], list], s: TrainSettings, workers: int = 0, world: World = World()
):
    """Each step's list of samples, this rank's share of them. One process with workers=0: one
    generator stream (the recipe of the shipped weights); otherwise StepBatches, its samples split
    among the ranks and made ahead in `workers` processes, so that a GPU is not left waiting on the
    CPU's simulation (a stream could not be split without each rank drawing all of it)."""
    if workers == 0 and world.size == 1:
        g = torch.Generator().manual_seed(s.seed)
        for _ in range(s.steps):
            yield [sample(g) for _ in range(s.batch_size)]
        return
    steps = StepBatches(sample, s, world.share(np.arange(s.batch_size)))
    if workers == 0:
        yield from map(steps.__getitem__, range(s.steps))
        return
    yield from torch.utils.data.DataLoader(
        steps, batch_size=None, num_workers=workers, prefetch_factor=4, collate_fn=lambda batch: batch
    )


def train(
    sample: Callable[[torch.Generator], list],
    s: TrainSettings,
    out: str | Path,
    sources: list,
    log=print,
    init: dict | None = None,
    workers: int = 0,
    world: World = World(),
    validation_sample: Callable[[torch.Generator], list] | None = None,
    validation_sources: list | None = None,
) -> dict:
    """Train a BlushUNet on `sample(generator)` -> [inputs, target, mask, solvent label] (from
    model_sampler or pair_sampler), from scratch or from `init` (a state dict), its batches made by
    `workers` processes (batches()) and shared among the ranks of `world`; writes `out`
    (safetensors) and `out`.json (settings, sources, loss curve, validation losses), both also at
    each progress line, so an interrupted run leaves usable weights. The validation set comes from
    `validation_sample` (default `sample`, with keys of its own: validation_set), e.g. a
    model_sampler of `validation_sources`, models never trained on; for the 2D denoiser one with
    views of its own (views_key=VALIDATION_VIEWS_KEY), lest the validation draw the training's."""
    if s.batch_size % world.size:
        # equal shares: the mean of the ranks' mean losses is the batch's, as DDP averages gradients
        raise ValueError(f"--batch {s.batch_size} is not divisible by the {world.size} ranks")
    torch.manual_seed(s.seed)
    out = Path(out)
    log, _ = world.voice(log, progress=False)
    net = BlushUNet(s.depth, s.width, layout=s.layout, dim=s.dim)
    if init is not None:
        net.load_state_dict(init)
    net = net.to(s.device)
    # DDP broadcasts rank 0's weights and all-reduces the gradients during backward()
    model = (
        net
        if world.size == 1
        else torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[s.device] if s.device.startswith("cuda") else None
        )
    )
    opt = torch.optim.AdamW(net.parameters(), lr=s.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.steps)
    losses: list[float] = []
    validation: list[dict] = []
    t0 = time.time()
    record = {
        "settings": asdict(s),
        "workers": workers,
        "ranks": world.size,
        "sources": [str(m) for m in sources],
        "losses": losses,
        # [{"step": s, "loss": x}]: the mean loss over the fixed validation set, step 0 before training
        "validation": validation,
        "validation_sources": [str(m) for m in validation_sources or []],  # none: drawn from `sources`
    }
    every = max(1, s.steps // 20)
    validate_every = s.validate_every or every
    held_out = validation_set(validation_sample or sample, s, world) if s.validation_samples else None

    def validate(step: int) -> str:
        if held_out is None or (step % validate_every and step != s.steps):
            return ""
        validation.append({"step": step, "loss": validation_loss(net, held_out, s, world)})
        return f"validation {validation[-1]['loss']:.4f}"

    if held_out is not None:
        log(f"step {0:6d}/{s.steps}: {validate(0)}  ({s.validation_samples} samples)")
    for step, batch in enumerate(batches(sample, s, workers, world), start=1):
        inputs, target, mask, solvent = (torch.stack(x).to(s.device) for x in zip(*batch))
        denoised, logit = model(inputs)
        loss = sample_loss(denoised, logit, target, mask, solvent, s)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        batch_loss = loss.detach().clone()
        world.sum(batch_loss)
        losses.append(float(batch_loss) / world.size)
        validated = validate(step)
        if step % every == 0 or step == s.steps:
            line = [f"step {step:6d}/{s.steps}: loss {np.mean(losses[-every:]):.4f}", validated]
            log("  ".join(x for x in line + [f"{time.time() - t0:.0f} s"] if x))
            record.update(steps_done=step, seconds=round(time.time() - t0, 1))
            if world.leader:
                save_weights(net, s, out)
                with atomic_path(out.with_suffix(out.suffix + ".json")) as tmp:
                    tmp.write_text(json.dumps(record))
        elif validated:
            log(f"step {step:6d}/{s.steps}: {validated}")
    return record
