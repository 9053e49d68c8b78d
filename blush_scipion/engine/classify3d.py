"""3D classification (RELION's Class3D, standard or with Blush): EM over classes x orientations x
translations, without half sets.

K references start from one map low-passed to `ini_high` and put on the images' grey scale; in the
first iteration each particle is compared with one class drawn at random (RELION's seed generation),
so the first M-step makes K maps from K random subsets. Then every iteration scores each image
against every class at every orientation of a HEALPix grid and every shift (the two GEMMs of
expectation.py over K x R columns), with the per-shell noise model of its optics group, the class
distribution and a Gaussian prior on the offsets as priors; the E-step uses the shells up to the
best class's resolution plus a margin. With oversampling (RELION's --oversampling 1, the default)
each image's significant poses are then scored again at half the angular and offset steps
(local_search.fine_pass). The M-step back-projects each class's significant poses and regularises it
with tau2 from its previous map's power spectrum (RELION's tau2_fudge, 4 in 3D): where that spectrum
is empty the data stand nearly unregularised, as in RELION. Class maps are masked by the particle's
sphere (or --mask). With Blush, each class's regularised map is denoised, masked, and becomes that
class's next reference (RELION 5: no spectral trailing in classification); run_classNNN.mrc keeps
the regularised map, run_classNNN_blush.mrc the denoised. Every iteration is checkpointed (RELION's
run_itNNN_* names); `resume` continues from the last one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .blush.denoiser import Denoiser, denoise_map, load_denoiser
from .checkpoint import iteration_path, last_checkpoint, write_json
from .device import Device
from .distributed import World
from .estep import BestPoses, GridSums, NoiseModel, ResidualSums, image_batches
from .expectation import log_likelihoods, posteriors, shift_phases, shifted, significant
from .fourier import low_pass
from .fsc import last_ssnr_shell
from .history import Class3DRecord, DriverState
from .images import initial_radius, initial_sigma2
from .inputs import check_classes, check_reference, input_fingerprints
from .local_search import Cells, cell_children, fine_pass
from .mask import particle_diameter
from .model_star import write_classification_model_star
from .mrc import read_map, write_map
from .option import option
from .particles import Particles
from .projector import (
    extract_central_slices,
    fourier_reference,
    fourier_shape,
    hermitian_symmetrize,
    reference_channels,
)
from .reconstruct import shell_mean, wiener_map
from .refine3d import _insert, greyscale_scale, half_batch_size, solvent_mask
from .rotation import symmetric_distance
from .run_folder import RunControl, RunIdentity
from .sampling import angular_step, grid_rotations, orientation_grid, translation_grid
from .summary import finish_classification
from .symmetry import symmetry_operators

PAD = 2
EMPTY_TAU2 = 1e-10  # a shell whose reference power is under this fraction of the strongest shell's is empty
UNREGULARISED = 1e3  # the SSNR that stands for RELION's 0.001 x weight where tau2 is empty


@dataclass(frozen=True)
class Class3DSettings:
    classes: int = option(4, "number of classes", kind="count", flag="k")
    iterations: int = option(25, "iterations", kind="count", flag="iter")
    tau2_fudge: float = option(
        4.0, "regularisation parameter T: higher trusts the data more (RELION: 4 in 3D)", kind="positive"
    )
    ini_high: float = option(60.0, "low-pass of the initial reference", kind="positive", unit="A")
    diameter: float | None = option(
        None, "particle diameter for the solvent mask (default: 90% of the box)", kind="positive", unit="A"
    )
    mask: str | None = option(None, "solvent mask (.mrc, values 0..1) instead of the sphere", kind="str")
    symmetry: str = option("C1", "point group: C<n>, D<n>, T, O, I (RELION settings)", kind="str", flag="sym")
    healpix_order: int = option(
        2,
        "angular sampling: order k gives 60/2^k degrees (2: 15 deg, searched at 7.5 deg where "
        "oversampled: RELION's default)",
        kind="order",
    )
    offset_range: float = option(
        5.0, "translation search range around each image's offset", kind="non_negative", unit="px"
    )
    offset_step: float = option(2.0, "translation step", kind="positive", unit="px")
    oversampling: int = option(
        1,
        "1: each image's significant poses of the grid are scored again at half the angular and offset "
        "steps (RELION's --oversampling 1: order 2 searches 7.5 deg); 0: the grid alone",
        kind="choice",
        choices={"0": 0, "1": 1},
    )
    oversampled_cells: int = option(
        32, "at most this many significant grid poses per image are oversampled", kind="count"
    )
    resolution_margin: int = option(
        10, "E-step shells beyond the best class's resolution (RELION's --incr_size)", kind="count"
    )
    batch_size: int = option(
        128, "images per E-step batch at most (fewer where --memory-gb needs it)", kind="count", flag="batch"
    )
    memory_gb: float | None = option(
        None,
        "memory the E-step's batches may take (default: half the device's free)",
        kind="positive",
        unit="GB",
    )
    device: str = option("cpu", "cpu or cuda:N", kind="str")
    seed: int = option(0, "random seed of the initial class assignment", kind="int")
    blush: bool = option(
        False, "Blush regularisation: each class's next reference is its denoised map", kind="flag"
    )
    blush_weights: str | None = option(
        None,
        "denoiser weights (.safetensors, or RELION's blush_v1.0.ckpt[.gz]); "
        "default: the weights shipped with this package",
        kind="str",
    )
    blush_from_resolution: float = option(
        0.0,
        "Blush's references start once the best class has reached this resolution, A (%(default)s: from "
        "the first iteration, as RELION 5; refine3d starts at 15)",
        kind="non_negative",
        unit="A",
    )


@dataclass
class Class3DState(DriverState):
    record = Class3DRecord

    iteration: int = 0
    r_current: int = 0  # E-step radius, Fourier pixels
    # (G, S) complex noise variance per optics group, shell
    sigma2: list[list[float]] = field(default_factory=list)
    sigma_offset: float = 2.0  # pixels, per axis
    distribution: list[float] = field(default_factory=list)  # (K,) class fractions
    resolution: list[float] = field(default_factory=list)  # (K,) A, the last shell with SSNR >= 1
    history: list[Class3DRecord] = field(default_factory=list)
    wall_seconds: float = 0.0  # the run's time up to this checkpoint, over every process that ran it


@dataclass
class Assignment:
    """Each particle's best class and pose, and its posterior maximum."""

    classes: torch.Tensor  # (N,) long, 0-based; -1 before the first iteration
    rotations: torch.Tensor  # (N, 3, 3)
    origins: torch.Tensor  # (N, 2) pixels
    max_prob: torch.Tensor  # (N,)


@dataclass
class ClassSums:
    """An E-step's M-step sums: each class's back-projection (its data and weights on the padded
    grid's half volume) and posterior mass, and sums over the whole set."""

    data: torch.Tensor  # (K, *fourier_shape(2 n)) complex
    weight: torch.Tensor  # (K, *fourier_shape(2 n))
    mass: torch.Tensor  # (K,) posterior mass per class
    offset2: float  # sum over particles of the expected squared offset (pixels^2)
    residual: ResidualSums

    @classmethod
    def zeros(cls, k: int, noise: NoiseModel) -> ClassSums:
        shape, device = (k, *fourier_shape(PAD * noise.n)), noise.weight.device
        return cls(
            torch.zeros(shape, dtype=torch.complex64, device=device),
            torch.zeros(shape, device=device),
            torch.zeros(k, device=device),
            0.0,
            ResidualSums.zeros(noise),
        )


# --- E-step ---------------------------------------------------------------------------------


def expectation(
    particles: Particles,
    references: torch.Tensor,
    a: Assignment,
    state: Class3DState,
    settings: Class3DSettings,
    *,
    seeds: torch.Tensor | None = None,
    progress: bool = True,
    world: World = World(),
) -> tuple[ClassSums, Assignment]:
    """Score every particle against references (K, n, n, n) at every orientation and shift around
    its previous offset, then (settings.oversampling) its significant poses again at half the steps;
    `seeds` (N,): the one class each particle may take (the first iteration). Returns the M-step
    sums and the best assignment, whole on every rank of a `world`."""
    device = torch.device(settings.device)
    n, k = particles.image_size, references.shape[0]
    noise = NoiseModel.at(n, state.r_current, torch.tensor(state.sigma2, dtype=torch.float32), device)
    grid = grid_rotations(orientation_grid(settings.healpix_order)).to(device)
    r = len(grid)
    transforms = [fourier_reference(ref.to(device), PAD) for ref in references]
    projections = torch.cat(
        [extract_central_slices(f, grid, noise.points, PAD) for f in transforms]
    )  # (K R, P)
    channels = (
        [reference_channels(f, noise.points.radius, PAD) for f in transforms] if settings.oversampling else []
    )
    del transforms
    shifts = translation_grid(settings.offset_range, settings.offset_step).to(device)
    phases = shift_phases(shifts, noise.points.coords, n)
    turns, nudges = (
        x.to(device) for x in cell_children(angular_step(settings.healpix_order), settings.offset_step)
    )
    fine_shifts = shifts[:, None] + nudges[None]  # (T, 4, 2)
    log_class = torch.log(torch.tensor(state.distribution, device=device).clamp(min=1e-8)).repeat_interleave(
        r
    )
    column_class = torch.arange(k * r, device=device) // r
    sym = symmetry_operators(settings.symmetry).to(device)
    sums = ClassSums.zeros(k, noise)
    grid_sums = None if settings.oversampling else GridSums.zeros(k * r, noise)
    offset2 = torch.zeros((), dtype=torch.float64, device=device)
    rows = world.share(np.arange(len(particles)))
    best, chosen = BestPoses.empty(len(rows)), torch.zeros(len(rows), 3, 3)
    size = half_batch_size(
        noise.points,
        settings,
        orientations=k * r,
        shifts=len(shifts),
        cells=settings.oversampled_cells if settings.oversampling else 0,
    )
    for b in image_batches(particles, rows, a.origins[rows], noise, size, device, progress=progress):
        x_t = shifted(b.x, phases)  # (B, T, P)
        origins = a.origins[b.rows].to(device)
        total = origins[:, None, :] + shifts[None]  # (B, T, 2)
        log_offset = -(total**2).sum(-1) / (2 * state.sigma_offset**2)
        scores = log_likelihoods(x_t, b.ctf, b.weight, projections) + log_offset[:, :, None] + log_class
        if seeds is not None:
            other = column_class[None, :] != seeds[b.rows].to(device)[:, None]  # (B, K R)
            scores = scores.masked_fill(other[:, None, :], -torch.inf)
        probs, pmax, (bt, br) = posteriors(scores)
        probs = significant(probs)  # the M-step (or the oversampled pass) visits significant poses only
        ar = torch.arange(len(b.rows), device=device)
        if grid_sums is None:
            top_p, top_t, top_c = Cells.top(probs, settings.oversampled_cells)
            # (B, T, 4) squared offsets of the fine shifts from the centre
            fine_offset2 = ((origins[:, None, None, :] + fine_shifts[None]) ** 2).sum(-1)
            found = fine_pass(
                channels,
                b.x,
                b.ctf,
                b.weight,
                b.ctf_over_noise,
                Cells(
                    top_p,
                    top_t,
                    turns[None, None] @ grid[top_c % r][:, :, None],
                    log_class[top_c][..., None].expand(-1, -1, len(turns)),
                    top_c // r,
                    column=top_c,
                ),
                fine_shifts,
                noise.points,
                shift_log_prior=-fine_offset2 / (2 * state.sigma_offset**2),
                pad=PAD,
            )
            best.add(b.at, found.classes, origins + found.shifts, found.max_prob)
            chosen[b.at] = found.rotations.cpu()
            offset2 += (found.shift_posterior * fine_offset2).sum().double()
            sums.residual.add(found.residual, b)
            sums.mass.index_add_(0, top_c.flatten() // r, found.mass.flatten())
            for c in range(k):
                mine = found.slice_classes == c
                _insert(
                    sums.data[c],
                    sums.weight[c],
                    found.slices[mine],
                    found.slice_weights[mine],
                    found.slice_rotations[mine],
                    noise.points,
                    sym,
                )
        else:
            best.add(b.at, br // r, total[ar, bt], pmax)
            chosen[b.at] = grid[br % r].cpu()
            offset2 += (probs.sum(2) * (total**2).sum(-1)).sum().double()
            sums.residual.add(x_t[ar, bt] - b.ctf * projections[br], b)
            grid_sums.add(probs, x_t, b)
            sums.mass += probs.sum((0, 1)).reshape(k, r).sum(1)
    if grid_sums is not None:  # each class's orientations some image weighs on
        used = grid_sums.used().reshape(k, r)
        for c in range(k):
            cols = slice(c * r, (c + 1) * r)
            data, weight = grid_sums.data[cols][used[c]], grid_sums.weight[cols][used[c]]
            _insert(sums.data[c], sums.weight[c], data, weight, grid[used[c]], noise.points, sym)
    world.sum(sums.data, sums.weight, sums.mass, sums.residual.sums, sums.residual.weights, offset2)
    sums.mass, sums.offset2 = sums.mass.cpu(), float(offset2)
    classes, origins, max_prob = best.gathered(rows, len(particles), world)
    mine = torch.zeros(len(particles), dtype=torch.bool)
    mine[rows] = True
    rotations = torch.zeros(len(particles), 3, 3)
    rotations[rows] = chosen
    return sums, Assignment(classes, world.assemble(rotations, mine), origins, max_prob)


# --- M-step ---------------------------------------------------------------------------------


def reference_power(reference: torch.Tensor, device: Device) -> torch.Tensor:
    """(n, n, n) map -> (n//2+1,) tau2: the mean power per shell of its transform as the projector
    sees it (in the units of the images' transforms, as the M-step's weights are)."""
    n = reference.shape[-1]
    return shell_mean(fourier_reference(reference.to(device), PAD).abs() ** 2, n, PAD)[: n // 2 + 1].cpu()


def class_ssnr(tau2: torch.Tensor, mean_weight: torch.Tensor, fudge: float) -> torch.Tensor:
    """(S,) tau2 and the back-projection's mean weight per shell -> (S,) the class's SSNR, RELION's
    data_vs_prior: tau2_fudge x tau2 x weight, with pad^3 for the padded grid (its
    oversampling_correction)."""
    return fudge * tau2 * PAD**3 * mean_weight


def class_map(
    sums: ClassSums, c: int, tau2: torch.Tensor, n: int, settings: Class3DSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c's tau2-regularised map (n, n, n) and its SSNR per shell (n//2+1,), from its
    back-projection; shells where tau2 is empty (beyond a low-passed start) are regularised by 0.001
    of their mean weight, as RELION does."""
    data, weight = sums.data[c], sums.weight[c]
    hermitian_symmetrize(data, weight)
    mean_weight = shell_mean(weight, n, PAD)[: n // 2 + 1].cpu()
    ssnr = class_ssnr(tau2, mean_weight, settings.tau2_fudge)
    empty = tau2 <= EMPTY_TAU2 * tau2.max().clamp(min=1e-30)
    volume = wiener_map(data, weight, n, PAD, ssnr=torch.where(empty, UNREGULARISED, ssnr)).cpu()
    return volume, torch.where(empty, 0.0, ssnr)


def class_tau2(maps: torch.Tensor, device: Device) -> torch.Tensor:
    """(K, n, n, n) class maps -> (K, n//2+1) their tau2 (reference_power), the next M-step's prior."""
    return torch.stack([reference_power(m, device) for m in maps])


def maximisation(
    sums: ClassSums,
    tau2: torch.Tensor,
    settings: Class3DSettings,
    n: int,
    apix: float,
    *,
    denoiser: Denoiser | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """New regularised class maps (K, n, n, n), masked; Blush's references (K, n, n, n) or None
    without a `denoiser`; the classes' SSNR (K, n//2+1). tau2 (K, n//2+1): the previous maps'."""
    k = tau2.shape[0]
    mask = solvent_mask(settings, n, apix)
    maps, blush, ssnr = [], [], []
    diameter = particle_diameter(settings.diameter, n, apix)
    for c in range(k):
        volume, s = class_map(sums, c, tau2[c], n, settings)
        maps.append(volume * mask)
        ssnr.append(s)
        if denoiser is not None:
            blush.append(denoise_map(volume, apix, denoiser, diameter)[0].cpu() * mask)
    return torch.stack(maps), torch.stack(blush) if blush else None, torch.stack(ssnr)


def blush_active(state: Class3DState, settings: Class3DSettings) -> bool:
    """Whether this iteration's references come from the denoiser: from the first iteration, or once
    the best class so far has reached settings.blush_from_resolution."""
    best = min((min(e.class_resolution_angstrom) for e in state.history), default=settings.ini_high)
    return settings.blush and (settings.blush_from_resolution <= 0 or best <= settings.blush_from_resolution)


def next_state(
    state: Class3DState, settings: Class3DSettings, sums: ClassSums, ssnr: torch.Tensor, n: int, apix: float
) -> Class3DState:
    s = replace(state)
    s.iteration += 1
    s.distribution = (sums.mass / sums.mass.sum()).tolist()
    s.sigma2 = sums.residual.spectrum(torch.tensor(state.sigma2), state.r_current).tolist()
    s.sigma_offset = float(
        np.clip(math.sqrt(sums.offset2 / (2 * float(sums.mass.sum()))), 0.5, max(settings.offset_range, 0.5))
    )
    last = last_ssnr_shell(ssnr)
    s.resolution = [n * apix / max(int(x), 1) for x in last]
    s.r_current = int(min(n // 2, max(int(last.max()) + settings.resolution_margin, state.r_current)))
    return s


# --- files ---------------------------------------------------------------------------------


def write_data_star(path: Path, particles: Particles, a: Assignment) -> None:
    particles.with_poses(a.rotations, a.origins, a.max_prob, rlnClassNumber=a.classes.numpy() + 1).write(path)


def class_file(prefix: str, c: int, *, blush: bool = False) -> str:
    return f"{prefix}class{c + 1:03d}{'_blush' if blush else ''}.mrc"


def write_model_star(
    path: Path,
    prefix: str,
    state: Class3DState,
    ssnr: torch.Tensor,
    tau2: torch.Tensor,
    n: int,
    apix: float,
    tau2_fudge: float,
) -> None:
    """run_model.star of the class maps named with `prefix`, with their SSNR and tau2 (K, n//2+1)."""
    k = len(state.distribution)
    curves = [
        {"rlnSsnrMap": ssnr[c].double().numpy(), "rlnReferenceTau2": tau2[c].double().numpy()}
        for c in range(k)
    ]
    write_classification_model_star(
        path,
        state,
        [class_file(prefix, c) for c in range(k)],
        curves,
        dimensionality=3,
        n=n,
        pixel_size=apix,
        tau2_fudge=tau2_fudge,
    )


def write_iteration(
    out: Path,
    prefix: str,
    particles: Particles,
    maps: torch.Tensor,
    blush: torch.Tensor | None,
    a: Assignment,
    state: Class3DState,
    ssnr: torch.Tensor,
    tau2: torch.Tensor,
    settings: Class3DSettings,
) -> None:
    n, apix = particles.image_size, particles.pixel_size
    for c in range(len(maps)):
        write_map(out / class_file(prefix, c), maps[c], apix)
        if blush is not None:
            write_map(out / class_file(prefix, c, blush=True), blush[c], apix)
    write_data_star(out / f"{prefix}data.star", particles, a)
    write_model_star(out / f"{prefix}model.star", prefix, state, ssnr, tau2, n, apix, settings.tau2_fudge)
    # written last: it marks the iteration done
    write_json(out / f"{prefix}optimiser.json", {"state": state.to_json(), "settings": asdict(settings)})


# --- the driver ----------------------------------------------------------------------------

HOW_NOT_WHAT = ("device", "memory_gb", "batch_size", "iterations", "blush_weights", "mask")


def classify3d(
    particles: Particles,
    reference: torch.Tensor,
    reference_apix: float,
    settings: Class3DSettings,
    out_dir: str | Path,
    control: RunControl = RunControl(),
) -> dict:
    """3D classification into settings.classes classes; writes RELION's files into `out_dir` (held
    for this run while it runs: run_folder.py) and returns the summary."""
    check_classes(particles, settings.classes)
    check_reference(reference, reference_apix, particles, "classify the particles by")
    # refused before the run folder is touched
    particle_diameter(settings.diameter, particles.image_size, particles.pixel_size)
    inputs = input_fingerprints(
        particles, reference, mask=settings.mask, blush_weights=settings.blush_weights
    )
    identity = RunIdentity.of("class3d", inputs, settings, ignore=HOW_NOT_WHAT)
    with control.holding(out_dir, identity) as run:
        return _classify3d(particles, reference, settings, Path(out_dir), run)


def _start(
    particles: Particles, reference: torch.Tensor, settings: Class3DSettings
) -> tuple[Class3DState, torch.Tensor, Assignment]:
    """The first iteration's state, K copies of the low-passed reference on the images' grey scale,
    and the particles' given origins (and poses, if any)."""
    n, apix, k = particles.image_size, particles.pixel_size, settings.classes
    state = Class3DState(
        sigma2=initial_sigma2(particles, n).tolist(),
        sigma_offset=max(1.0, settings.offset_range / 2),
        distribution=[1 / k] * k,
        resolution=[settings.ini_high] * k,
        r_current=initial_radius(n, apix, settings.ini_high, settings.resolution_margin),
    )
    start = low_pass(reference, settings.ini_high, apix) * solvent_mask(settings, n, apix)
    start = start * greyscale_scale(
        particles,
        start,
        torch.tensor(state.sigma2),
        state.r_current,
        settings.healpix_order,
        settings.offset_range,
        settings.offset_step,
        settings.device,
    )
    rotations = particles.start_rotations()
    a = Assignment(
        torch.full((len(particles),), -1), rotations, particles.origins(), torch.zeros(len(particles))
    )
    return state, start.expand(k, n, n, n).clone(), a


def _resume(
    out: Path, it: int, settings: Class3DSettings
) -> tuple[Class3DState, torch.Tensor, torch.Tensor, Assignment]:
    """A checkpoint's state, class maps, next references (Blush's where they were written) and
    assignment."""
    state = Class3DState.from_json(json.loads(iteration_path(out, it, "optimiser.json").read_text())["state"])
    prefix = iteration_path(out, it, "")
    maps = torch.stack([read_map(out / class_file(prefix.name, c))[0] for c in range(settings.classes)])
    references = maps
    if settings.blush and (out / class_file(prefix.name, 0, blush=True)).exists():
        references = torch.stack(
            [read_map(out / class_file(prefix.name, c, blush=True))[0] for c in range(settings.classes)]
        )
    saved = Particles.read(iteration_path(out, it, "data.star"))
    a = Assignment(saved.classes(), saved.rotations(), saved.origins(), saved.max_prob())
    return state, maps, references, a


def _classify3d(
    particles: Particles,
    reference: torch.Tensor,
    settings: Class3DSettings,
    out: Path,
    run: RunControl,
) -> dict:
    t_mark = time.time()  # the last checkpoint's time in this process (wall_seconds counts from it)
    torch.manual_seed(settings.seed)
    n, apix, k = particles.image_size, particles.pixel_size, settings.classes
    start_it = last_checkpoint(out) if run.resume else None
    if start_it is not None:
        state, maps, references, a = _resume(out, start_it, settings)
        run.log(f"continuing after iteration {start_it}")
    else:
        state, maps, a = _start(particles, reference, settings)
        references = maps
    tau2 = class_tau2(maps, settings.device)
    denoiser = load_denoiser(settings.blush_weights, settings.device) if settings.blush else None
    sym = symmetry_operators(settings.symmetry)
    run.log(
        f"class3d: {len(particles)} particles, {n} px at {apix:.3f} A, {k} classes, HEALPix order "
        f"{settings.healpix_order} x "
        f"{len(translation_grid(settings.offset_range, settings.offset_step))} shifts, "
        f"symmetry {settings.symmetry}, device {settings.device}"
        + (f", Blush ({denoiser.source})" if denoiser else "")
        + (
            f" from {settings.blush_from_resolution:g} A"
            if denoiser and settings.blush_from_resolution
            else ""
        )
    )
    while state.iteration < settings.iterations:
        t0 = time.time()
        # RELION's seeds: in the first iteration each particle meets one random class
        seeds = (
            torch.randperm(len(particles), generator=torch.Generator().manual_seed(settings.seed)) % k
            if state.iteration == 0 and k > 1
            else None
        )
        sums, b = expectation(
            particles, references, a, state, settings, seeds=seeds, progress=run.progress, world=run.world
        )
        t_expectation = time.time() - t0
        t_blush = time.time()
        active = blush_active(state, settings)
        maps, blush, ssnr = maximisation(sums, tau2, settings, n, apix, denoiser=denoiser if active else None)
        tau2 = class_tau2(maps, settings.device)  # once: this iteration's model STAR, the next M-step
        new = next_state(state, settings, sums, ssnr, n, apix)
        changed = float((b.classes != a.classes).float().mean())
        moved = (
            float(symmetric_distance(b.rotations, a.rotations, sym).mean()) if state.iteration > 0 else None
        )
        entry = Class3DRecord(
            iteration=new.iteration,
            class_distribution=[round(x, 4) for x in new.distribution],
            class_resolution_angstrom=[round(x, 2) for x in new.resolution],
            r_current=state.r_current,
            class_changes=round(changed, 4),
            angular_change=moved,
            sigma_offset_px=round(new.sigma_offset, 2),
            seconds=round(time.time() - t0, 1),
            expectation_seconds=round(t_expectation, 1),
            maximization_seconds=round(time.time() - t_blush, 1),
            blush=active if settings.blush else None,
        )
        new.history = state.history + [entry]
        new.wall_seconds = state.wall_seconds + time.time() - t_mark
        a, references = b, (maps if blush is None else blush)
        if run.world.leader:
            write_iteration(
                out, f"run_it{new.iteration:03d}_", particles, maps, blush, a, new, ssnr, tau2, settings
            )
        t_mark = time.time()
        run.log(
            f"iteration {new.iteration:3d}: classes "
            + " ".join(f"{100 * x:4.1f}%" for x in new.distribution)
            + "  resolution "
            + " ".join(f"{x:.1f}" for x in new.resolution)
            + f" A  E-step to shell {state.r_current}"
            f"  classes changed {100 * changed:5.1f}%  {entry.seconds:.0f} s" + ("  Blush" if active else "")
        )
        state = new
    finals = [class_file("", c) for c in range(k)] + ["data.star", "model.star"]
    if (out / class_file(iteration_path(out, state.iteration, "").name, 0, blush=True)).exists():
        finals += [class_file("", c, blush=True) for c in range(k)]
    elif settings.blush:
        run.log(
            f"warning: Blush was never used: no class reached {settings.blush_from_resolution:g} A "
            "(--blush-from-resolution)"
        )
    return finish_classification(
        out,
        run.log,
        state,
        finals,
        renamed=("model.star",),  # the final model STAR names the final maps
        world=run.world,
        settings=settings,
        particles=particles,
        wall_seconds=state.wall_seconds,
    )
