"""Gold-standard 3D auto-refinement (RELION's auto-refine, standard or Blush prior).

State lives in a small RefineState threaded through pure steps; each concern is its own module:
sampling (pose grids), expectation (likelihoods as GEMMs), projector (slices), reconstruct
(Wiener maps), fsc. Per iteration, for each half set: E-step over orientations x translations
against that half's reference, posterior-weighted back-projection, then FSC between the halves,
tau2 from it, new regularised references, and the auto-sampling decision. Every iteration is
checkpointed atomically; `resume` continues from the last finished one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from . import model_star
from .accuracy import expected_accuracy
from .blush import TRAINED_RESOLUTION_MAX
from .blush.denoiser import Denoiser, load_denoiser
from .blush.prior import blush_reference
from .checkpoint import iteration_path, last_checkpoint, write_json
from .ctf import compute_ctf_2d
from .device import Device
from .distributed import World
from .estep import GridSums, NoiseModel, ResidualSums, image_batches, noise_spectrum
from .expectation import cross_and_power, log_likelihoods, posteriors, shift_phases, shifted, significant
from .fourier import low_pass
from .fsc import fourier_shell_correlation, resolution_at
from .history import DriverState, Refine3DRecord, history_json
from .images import group_index, image_batch, initial_radius, initial_sigma2, noise_weighted_points
from .inputs import check_reference, input_fingerprints
from .local_search import FINE_ROTATIONS, LocalSampling, coarse_radius, local_search
from .mask import particle_diameter, spherical_mask
from .memory import batch_size, memory_budget_bytes, peak_memory_gb
from .mrc import StackReader, read_map, write_map
from .option import option
from .particles import Particles
from .projector import (
    SlicePoints,
    extract_central_slices,
    fourier_reference,
    fourier_shape,
    hermitian_symmetrize,
    insert_central_slices,
    reference_channels,
)
from .reconstruct import padded_shell_slabs, ssnr_from_half_fsc, wiener_map
from .rotation import symmetric_distance
from .run_folder import RunControl, RunIdentity
from .sampling import angular_step, grid_rotations, orientation_grid, translation_grid
from .summary import run_summary
from .symmetry import symmetry_operators

PAD = 2


class BatchSettings(Protocol):
    """What half_batch_size reads of RefineSettings or Class3DSettings."""

    @property
    def batch_size(self) -> int: ...
    @property
    def memory_gb(self) -> float | None: ...
    @property
    def device(self) -> str: ...


class MaskSettings(Protocol):
    """What solvent_mask reads of RefineSettings or Class3DSettings."""

    @property
    def mask(self) -> str | None: ...
    @property
    def diameter(self) -> float | None: ...


@dataclass(frozen=True)
class RefineSettings:
    diameter: float | None = option(
        None,
        "particle diameter in A for the solvent mask (default: 90% of the box)",
        kind="positive",
        unit="A",
        group="refinement",
    )
    symmetry: str = option(
        "C1", "point group: C<n>, D<n>, T, O, I (RELION settings)", kind="str", flag="sym", group="refinement"
    )
    ini_high: float = option(
        40.0, "low-pass of the initial reference", kind="positive", unit="A", group="refinement"
    )
    join_halves_below: float = option(
        40.0, "halves share their data below this resolution", kind="positive", unit="A", group="refinement"
    )
    healpix_order: int = option(
        2,
        "initial angular sampling: order k gives 60/2^k degrees (%(default)s: 15 deg)",
        kind="order",
        group="sampling",
    )
    local_from_order: int = option(
        3, "local searches around the previous pose from this order on", kind="order", group="sampling"
    )
    max_order: int | None = option(
        None,
        "finest angular sampling order (default: none; the sampling gets finer until its step is under "
        "75% of the accuracy the data allow, RELION's rule)",
        kind="order",
        group="sampling",
    )
    offset_range: float = option(
        5.0, "translation search range", kind="non_negative", unit="px", group="sampling"
    )
    # the finest examined (in local searches the children's)
    offset_step: float = option(2.0, "translation step", kind="positive", unit="px", group="sampling")
    oversampled_cells: int = option(
        32,
        "local searches: at most this many significant coarse cells per image are sampled at the fine step",
        kind="count",
        group="sampling",
    )
    resolution_margin: int = 5  # E-step shells beyond the FSC 0.143 shell (no flag)
    max_iterations: int = option(  # a cap only: the auto-sampling decides when to stop
        50,
        "iteration cap",
        kind="count",
        flag="max-iter",
        group="refinement",
    )
    batch_size: int = option(
        128,
        "images per E-step batch at most (%(default)s; fewer where --memory-gb needs it)",
        kind="count",
        flag="batch",
        group="run",
    )
    memory_gb: float | None = option(
        None,
        "memory the E-step's batches may take, GB (default: half of the device's free memory)",
        kind="positive",
        unit="GB",
        group="run",
    )
    device: str = option("cpu", "cpu or cuda:N", kind="str", group="run")
    seed: int = option(0, "random seed for the half-set split", kind="int", group="run")
    mask: str | None = option(
        None, "solvent mask (.mrc, values 0..1) instead of the spherical one", kind="str", group="refinement"
    )
    blush: bool = option(  # references from the Blush denoiser (blush/prior.py)
        False,
        "Blush regularization: each half's reference is its denoised reconstruction",
        kind="flag",
        group="Blush",
    )
    blush_weights: str | None = option(
        None,
        "denoiser weights (.safetensors, or RELION's blush_v1.0.ckpt[.gz]); "
        "default: the weights shipped with this package",
        kind="str",
        group="Blush",
    )
    blush_trailing: bool = option(  # spectral trailing of the denoised references
        True,
        "use the denoised map at all resolutions (inflates the gold-standard FSC; for tests)",
        kind="flag",
        flag="blush-skip-spectral-trailing",
        group="Blush",
    )
    blush_fill: bool = option(  # the tau2 map fills in above the trailing edge (trailing.py)
        True,
        "above the trailing edge each half's reference is its tau2-regularised (Wiener) map "
        "(%(default)s; measured better at low SNR) or zero (RELION 5)",
        kind="choice",
        choices={"wiener": True, "zero": False},
        flag="blush-trailing-fill",
        group="Blush",
    )
    blush_from_resolution: float = option(
        TRAINED_RESOLUTION_MAX,
        "Blush's references start once the gold-standard resolution reaches this, A (%(default)s: the "
        "coarsest the shipped denoiser was trained on; 0: from the first iteration, as RELION 5)",
        kind="non_negative",
        unit="A",
        group="Blush",
    )


@dataclass
class RefineState(DriverState):
    record = Refine3DRecord

    iteration: int = 0
    order: int = 2
    offset_range: float = 5.0
    offset_step: float = 2.0
    r_current: int = 0  # E-step radius, Fourier pixels
    best_resolution: float = float("inf")
    iterations_without_gain: int = 0
    smallest_angular_change: float = float("inf")  # degrees, at the current sampling
    final: bool = False  # the next iteration is the last (all frequencies)
    poses_given: bool = False  # the particles came with poses: local searches may start at once
    done: bool = False
    # (G, S): complex noise variance per optics group and shell
    sigma2: list[list[float]] = field(default_factory=list)
    fsc: list[float] = field(default_factory=list)  # (S,) the last iteration's gold-standard FSC
    history: list[Refine3DRecord] = field(default_factory=list)
    wall_seconds: float = 0.0  # the run's time up to this checkpoint, over every process that ran it

    @classmethod
    def from_json(cls, state: dict) -> RefineState:
        s = super().from_json(state)
        if s.sigma2 and not isinstance(s.sigma2[0], list):  # checkpoints from before optics groups
            s.sigma2 = [s.sigma2]
        return s


# --- images ---------------------------------------------------------------------------------


def greyscale_scale(
    particles: Particles,
    reference: torch.Tensor,
    sigma2: torch.Tensor,
    r_max: int,
    order: int,
    offset_range: float,
    offset_step: float,
    device: Device,
    sample: int = 256,
) -> float:
    """The factor that puts a reference on the images' grey scale: the median over a sample of
    images of the least-squares scale of the CTF-modulated projection at their given poses, or
    without poses, of the best-correlating one on the grid of `order` (at most 2: a scale needs
    no finer) and shifts.

    With it the first iteration can weigh poses by their likelihood (soft posteriors over
    low-resolution ambiguities) instead of committing each image to its best correlation.
    """
    n, apix = particles.image_size, particles.pixel_size
    points, _, weight = noise_weighted_points(n, r_max, sigma2, device)
    groups = torch.as_tensor(group_index(particles), device=device)
    rows = np.linspace(0, len(particles) - 1, min(sample, len(particles))).astype(int)
    reference_ft = fourier_reference(reference.to(device), PAD)
    reader = StackReader()
    try:
        x, ctf = image_batch(
            particles, rows, reader, particles.origins(rows), particles.ctf(rows), points, apix, device
        )
    finally:
        reader.close()
    weight = weight[groups[torch.as_tensor(rows)]]
    if particles.has_poses():
        projections = extract_central_slices(reference_ft, particles.rotations(rows).to(device), points, PAD)
        cross, power = cross_and_power(x[:, None], ctf, weight, projections[:, None])
        return float((cross[:, 0, 0] / power[:, 0].clamp(min=1e-30)).median())
    projections = extract_central_slices(
        reference_ft, grid_rotations(orientation_grid(min(order, 2))).to(device), points, PAD
    )
    phases = shift_phases(translation_grid(offset_range, offset_step).to(device), points.coords, n)
    cross, power = cross_and_power(shifted(x, phases), ctf, weight, projections)
    best = (cross / power.clamp(min=1e-30).sqrt()[:, None, :]).flatten(1).argmax(1)
    t, r = best // projections.shape[0], best % projections.shape[0]
    ar = torch.arange(len(rows), device=device)
    return float((cross[ar, t, r] / power[ar, r].clamp(min=1e-30)).median())


# --- one half set: E-step and back-projection -----------------------------------------------


@dataclass
class HalfResult:
    data: torch.Tensor  # fourier_shape(m) complex back-projection
    weight: torch.Tensor  # fourier_shape(m)
    rotations: torch.Tensor  # (N_h, 3, 3) best poses
    origins: torch.Tensor  # (N_h, 2) pixels
    max_prob: torch.Tensor  # (N_h,)
    residual: torch.Tensor  # (G, n//2+1) sum of w |X - C A|^2 at the best pose, per optics group
    residual_weight: torch.Tensor
    insert_seconds: float = 0.0  # the grid's summed slices back-projected once per half (per iteration)


def searches_locally(state: RefineState, settings: RefineSettings) -> bool:
    """Local searches from --local-from-order on, once there are poses to search around (as RELION,
    from the first iteration when the particles come with angles and the order is that fine)."""
    return state.order >= settings.local_from_order and (state.iteration > 0 or state.poses_given)


def half_batch_size(
    points: SlicePoints,
    settings: BatchSettings,
    *,
    sampling: LocalSampling | None = None,
    cells: int = 0,
    orientations: int = 0,
    shifts: int = 0,
) -> int:
    """Images per E-step batch within the memory budget: what one image's likelihoods, projections
    and M-step slices take (with room for temporaries), after a global grid's fixed sums (of
    `orientations` x `shifts`, with `cells` oversampled per image where given; local searches pass
    their `sampling` and its oversampled `cells` instead)."""
    p, complex_bytes = points.index.shape[0], 8
    t = len(sampling.shifts) if sampling is not None else shifts
    # the oversampled pass over `cells` per image: float planes of the fine projections and their
    # power (3 fine), slices kept and copied with their weights (5 fine), the images at every fine
    # shift (3 x 4 T complex)
    fine_pass = 4 * p * (8 * cells * FINE_ROTATIONS + 24 * t) if cells else 0
    if sampling is not None:  # plus the coarse cells' planes and power (3 J)
        per_image, fixed = 4 * p * 3 * len(sampling.rotations) + fine_pass, 0
    else:
        per_image = 4 * complex_bytes * p * shifts + 4 * 4 * shifts * orientations + fine_pass
        fixed = 3 * complex_bytes * p * orientations
    return batch_size(
        per_image, memory_budget_bytes(settings.device, settings.memory_gb), settings.batch_size, fixed
    )


def refine_half(
    particles: Particles,
    rows: np.ndarray,
    reference: torch.Tensor,
    rotations: torch.Tensor,
    origins: torch.Tensor,
    sigma2: torch.Tensor,
    state: RefineState,
    settings: RefineSettings,
    sym: torch.Tensor,
    *,
    progress: bool,
    label: str,
    world: World = World(),
) -> HalfResult:
    """E-step for one half set's particles against its reference, and their back-projection. Under
    torch.distributed `rows` are this rank's share, and the sums come back all-reduced."""
    device = torch.device(settings.device)
    n, apix = particles.image_size, particles.pixel_size
    m = PAD * n
    noise = NoiseModel.at(n, n // 2 if state.final else state.r_current, sigma2, device)
    points = noise.points
    ref_ft = fourier_reference(reference.to(device), PAD)
    local = searches_locally(state, settings)
    if local:
        ref_ft = reference_channels(ref_ft, points.radius, PAD)
        sampling = LocalSampling.around(
            angular_step(state.order), state.offset_range, state.offset_step, device=device
        )
        r_coarse = coarse_radius(
            angular_step(state.order), particle_diameter(settings.diameter, n, apix), n, apix
        )
        batch = half_batch_size(points, settings, sampling=sampling, cells=settings.oversampled_cells)
    else:
        shifts = translation_grid(state.offset_range, state.offset_step).to(device)
        phases = shift_phases(shifts, points.coords, n)
        grid = grid_rotations(orientation_grid(state.order)).to(device)
        projections = extract_central_slices(ref_ft, grid, points, PAD)
        sums = GridSums.zeros(len(grid), noise)
        batch = half_batch_size(points, settings, orientations=len(grid), shifts=len(shifts))
    data = torch.zeros(fourier_shape(m), dtype=torch.complex64, device=device)
    back_weight = torch.zeros(fourier_shape(m), device=device)
    # written in place, batch by batch: a small tensor kept per batch pins the heap (estep.BestPoses)
    count = len(rows)
    new_rot, new_orig, max_prob = torch.zeros(count, 3, 3), torch.zeros(count, 2), torch.zeros(count)
    residuals = ResidualSums.zeros(noise)
    for b in image_batches(particles, rows, origins, noise, batch, device, progress=progress, label=label):
        if local:
            found = local_search(
                ref_ft,
                b.x,
                b.ctf,
                b.weight,
                b.ctf_over_noise,
                rotations[b.at].to(device),
                sampling,
                points,
                coarse_radius=r_coarse,
                cells=settings.oversampled_cells,
                pad=PAD,
            )
            chosen, shift, pmax, residual = found.rotations, found.shifts, found.max_prob, found.residual
            _insert(data, back_weight, found.slices, found.slice_weights, found.slice_rotations, points, sym)
        else:
            x_t = shifted(b.x, phases)  # (B, T, P)
            probs, pmax, (bt, br) = posteriors(log_likelihoods(x_t, b.ctf, b.weight, projections))
            ar = torch.arange(len(b.x), device=device)
            chosen, shift, residual = grid[br], shifts[bt], x_t[ar, bt] - b.ctf * projections[br]
            sums.add(significant(probs), x_t, b)  # the M-step visits the significant poses only
        new_rot[b.at] = chosen.cpu()
        new_orig[b.at] = (origins[b.at].to(device) + shift).cpu()
        max_prob[b.at] = pmax.cpu()
        residuals.add(residual, b)  # the noise: residuals at the best pose, per optics group and shell
    t_insert = time.time()
    if not local:  # the orientations some image weighs on
        used = sums.used()
        _insert(data, back_weight, sums.data[used], sums.weight[used], grid[used], points, sym)
    world.sum(data, back_weight, residuals.sums, residuals.weights)
    hermitian_symmetrize(data, back_weight)
    return HalfResult(
        data,
        back_weight,
        new_rot,
        new_orig,
        max_prob,
        residuals.sums.cpu(),
        residuals.weights.cpu(),
        time.time() - t_insert,
    )


INSERT_CHUNK = 1 << 21  # slice points back-projected at once: the scatter's indices take 64 bytes a point


def _insert(data, weight, slices, wslices, rotations, points: SlicePoints, sym: torch.Tensor) -> None:
    """Back-project slices (K, P) at rotations (K, 3, 3), once per symmetry operator, in chunks of
    slices so that the scatter's temporaries stay bounded whatever K (a global grid has 36,864)."""
    chunk = max(1, INSERT_CHUNK // max(points.index.shape[0], 1))
    for op in sym:
        for start in range(0, len(rotations), chunk):
            part = slice(start, start + chunk)
            insert_central_slices(
                data,
                weight,
                slices[part] * points.weight,
                wslices[part] * points.weight,
                rotations[part] @ op,
                points,
                PAD,
            )


# --- the iteration -------------------------------------------------------------------------


@dataclass
class IterationMeasures:
    """What an iteration measured, for the auto-sampling (next_state) and the history."""

    fsc: torch.Tensor  # (n//2+1,) gold-standard FSC of the unregularised halves, 0 past the E-step's radius
    sigma2: torch.Tensor  # (G, n//2+1) the next noise spectra, per optics group
    angular_change: float  # degrees, mean over particles (symmetry-aware)
    offset_change: float  # pixels, RMS
    accuracy_rotation: float  # degrees, RELION's expected accuracy
    accuracy_translation: float  # pixels


@dataclass
class IterationResult:
    """One iteration of both halves, as run_iteration hands it to the driver's loop."""

    references: list[torch.Tensor]  # 2 x (n, n, n): each half's next reference (Blush's where used), masked
    rotations: torch.Tensor  # (N, 3, 3) every particle's best pose
    origins: torch.Tensor  # (N, 2) pixels
    max_prob: torch.Tensor  # (N,)
    measured: IterationMeasures
    unregularised: list[torch.Tensor]  # 2 x (n, n, n): the halves' maps without tau2
    joined: torch.Tensor | None  # (n, n, n) both halves, tau2-regularised: the final iteration's only
    joined_unregularised: torch.Tensor | None  # (n, n, n) the same without tau2, with Blush only
    expectation_seconds: float
    blush_seconds: float
    accuracy_seconds: float


def join_low_resolution(halves: list[HalfResult], shell: float) -> None:
    """Average both halves' data and weights below `shell` (RELION's low_resol_join_halves)."""
    first, second = halves
    for planes, shells in padded_shell_slabs(first.data.shape[0], PAD, first.data.device):
        low = shells <= shell
        for a, b in (
            (first.data[planes], second.data[planes]),
            (first.weight[planes], second.weight[planes]),
        ):
            joint = 0.5 * (a[low] + b[low])
            a[low], b[low] = joint, joint


def solvent_mask(settings: MaskSettings, n: int, apix: float) -> torch.Tensor:
    if settings.mask:
        mask, mask_apix = read_map(settings.mask)
        if mask.shape[-1] != n or abs(mask_apix - apix) > 1e-3 * apix:
            raise ValueError(
                f"{settings.mask}: mask is {mask.shape[-1]} px at {mask_apix:.3f} A, the particles "
                f"{n} px at {apix:.3f} A"
            )
        if mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
            raise ValueError(f"{settings.mask}: mask values must lie in [0, 1]")
        return mask
    return spherical_mask(n, particle_diameter(settings.diameter, n, apix) / (2 * apix), edge=5)


def sample_accuracy(
    particles: Particles,
    references: list[torch.Tensor],
    subsets: np.ndarray,
    rotations: torch.Tensor,
    sigma2: torch.Tensor,
    state: RefineState,
    settings: RefineSettings,
    sample: int = 100,
) -> tuple[float, float]:
    """RELION's expected accuracies (degrees, pixels) on `sample` particles (its n_trials_acc, 100),
    half from each half set against that half's reference, at the E-step's current size."""
    device = torch.device(settings.device)
    n, apix = particles.image_size, particles.pixel_size
    points, _, weight = noise_weighted_points(n, n // 2 if state.final else state.r_current, sigma2, device)
    rng = np.random.default_rng(settings.seed + state.iteration)
    generator = torch.Generator().manual_seed(settings.seed + state.iteration)
    groups = torch.as_tensor(group_index(particles), device=device)
    found = []
    for h in (1, 2):
        members = np.nonzero(subsets == h)[0]
        rows = np.sort(rng.choice(members, min(sample // 2, len(members)), replace=False))
        ctf = points.gather(compute_ctf_2d(particles.ctf(rows).to(device), n, apix))
        ref = fourier_reference(references[h - 1].to(device), PAD)
        found.append(
            expected_accuracy(
                ref,
                rotations[rows].to(device),
                ctf,
                weight[groups[torch.as_tensor(rows, device=device)]],
                points,
                generator,
                PAD,
            )
        )
    rotation_errors, translation_errors = zip(*found)
    return float(np.mean(rotation_errors)), float(np.mean(translation_errors))


def run_iteration(
    particles: Particles,
    references: list[torch.Tensor],
    state: RefineState,
    settings: RefineSettings,
    subsets: np.ndarray,
    rotations: torch.Tensor,
    origins: torch.Tensor,
    *,
    progress: bool = True,
    denoiser: Denoiser | None = None,
    world: World = World(),
) -> IterationResult:
    """One EM iteration on both halves: the new references (Blush's when a `denoiser` is given),
    poses and measurements, the same on every rank of a `world`."""
    n, apix = particles.image_size, particles.pixel_size
    sigma2 = torch.tensor(state.sigma2, dtype=torch.float32)  # (G, S)
    sym = symmetry_operators(settings.symmetry).to(settings.device)
    halves = []
    new_rot, new_orig, new_pmax = rotations.clone(), origins.clone(), torch.zeros(len(particles))
    mine = torch.zeros(len(particles), dtype=torch.bool)
    t_expectation = time.time()
    for h in (1, 2):
        rows = world.share(np.nonzero(subsets == h)[0])
        result = refine_half(
            particles,
            rows,
            references[h - 1],
            rotations[rows],
            origins[rows],
            sigma2,
            state,
            settings,
            sym,
            progress=progress,
            label=f"half {h}",
            world=world,
        )
        new_rot[rows], new_orig[rows], new_pmax[rows] = result.rotations, result.origins, result.max_prob
        mine[rows] = True
        halves.append(result)
    new_rot, new_orig, new_pmax = (world.assemble(t, mine) for t in (new_rot, new_orig, new_pmax))
    # the E-step proper (per particle); the global grid's one back-projection counts with the M-step
    t_expectation = time.time() - t_expectation - sum(h.insert_seconds for h in halves)
    join_low_resolution(halves, n * apix / settings.join_halves_below)
    unreg = [wiener_map(h.data, h.weight, n, PAD).cpu() for h in halves]
    fsc = fourier_shell_correlation(unreg[0], unreg[1])
    r_cur = n // 2 if state.final else state.r_current
    fsc[r_cur + 1 :] = 0  # nothing was reconstructed there
    ssnr = ssnr_from_half_fsc(fsc)
    mask = solvent_mask(settings, n, apix)
    # each half holds half the data: its SSNR is F / (1 - F), half the full set's
    refs = [wiener_map(h.data, h.weight, n, PAD, ssnr=ssnr / 2).cpu() for h in halves]
    t_blush = time.time()
    if denoiser is not None:
        refs = [
            blush_reference(
                u,
                r,
                fsc,
                denoiser,
                apix,
                particle_diameter(settings.diameter, n, apix),
                trailing=settings.blush_trailing,
                fill=settings.blush_fill,
            ).cpu()
            for u, r in zip(unreg, refs)
        ]
    t_blush = time.time() - t_blush
    refs = [r * mask for r in refs]
    joined = joined_unregularised = None
    if state.final:
        # the halves are spent: sum them in place (a 384 px box's pair of half volumes is 2.7 GB)
        data, weight = halves[0].data.add_(halves[1].data), halves[0].weight.add_(halves[1].weight)
        joined = wiener_map(data, weight, n, PAD, ssnr=ssnr).cpu()
        if denoiser is not None:
            joined_unregularised = wiener_map(data, weight, n, PAD).cpu()
    t_accuracy = time.time()
    accuracy = sample_accuracy(particles, refs, subsets, new_rot, sigma2, state, settings)
    t_accuracy = time.time() - t_accuracy
    measured = IterationMeasures(
        fsc=fsc,
        sigma2=noise_spectrum(
            halves[0].residual + halves[1].residual,
            halves[0].residual_weight + halves[1].residual_weight,
            sigma2,
            r_cur,
        ),
        angular_change=float(symmetric_distance(new_rot, rotations, sym.cpu()).mean()),
        offset_change=float((new_orig - origins).norm(dim=1).pow(2).mean().sqrt()),
        accuracy_rotation=accuracy[0],
        accuracy_translation=accuracy[1],
    )
    return IterationResult(
        references=refs,
        rotations=new_rot,
        origins=new_orig,
        max_prob=new_pmax,
        measured=measured,
        unregularised=unreg,
        joined=joined,
        joined_unregularised=joined_unregularised,
        expectation_seconds=t_expectation,
        blush_seconds=t_blush,
        accuracy_seconds=t_accuracy,
    )


# --- auto-sampling -------------------------------------------------------------------------


def blush_active(state: RefineState, settings: RefineSettings) -> bool:
    """Whether this iteration's references come from the denoiser."""
    return settings.blush and (
        settings.blush_from_resolution <= 0 or state.best_resolution <= settings.blush_from_resolution
    )


def fine_enough(state: RefineState, settings: RefineSettings, accuracy_rotation: float) -> bool:
    """RELION's stop for the auto-sampling: the angular step is under 75% of the expected accuracy
    (or at the user's --max-order). Our global grid is not oversampled (RELION's is), so the first
    order of local searches is always reached."""
    if settings.max_order is not None and state.order >= settings.max_order:
        return True
    return state.order >= settings.local_from_order and angular_step(state.order) < 0.75 * accuracy_rotation


def finer_offsets(
    state: RefineState, settings: RefineSettings, measured: IterationMeasures, apix: float
) -> tuple[float, float]:
    """(step, range) in pixels for the next order, RELION's rule (updateAngularSampling): the fine
    step 75% of the expected accuracy, at most 1.5 A; the range five times the offsets' last RMS
    change, at most 1.3 times the last range, at least 1.5 coarse steps, halved while over four.
    The step returned is the finest examined (local searches' children; the coarse grid is twice
    it), never coarser than the current one."""
    local = state.order + 1 >= settings.local_from_order
    coarse = min(1.5 / apix, 0.75 * measured.accuracy_translation) * (2 if local else 1)
    span = min(1.3 * state.offset_range, 5 * measured.offset_change)
    span = max(span, 1.5 * coarse)
    if span > 4 * coarse:
        span /= 2
    if span > 4 * coarse:
        coarse = span / 4
    step = coarse / (2 if local else 1)
    if step > state.offset_step:
        return state.offset_step, state.offset_range
    return step, span


def next_state(
    state: RefineState,
    settings: RefineSettings,
    resolution: float,
    measured: IterationMeasures,
    n: int,
    apix: float,
) -> RefineState:
    """RELION's auto-refine logic: finer sampling when resolution stalls and the poses have settled,
    until the step is finer than the accuracy the data allow; then one last iteration with all
    frequencies."""
    s = replace(state)
    s.iteration += 1
    s.fsc = [float(x) for x in measured.fsc]
    s.sigma2 = measured.sigma2.tolist()
    if state.final:
        s.done = True
        return s
    gain = resolution < 0.99 * state.best_resolution  # RELION counts whole shells; we ask for 1%
    s.best_resolution = min(resolution, state.best_resolution)
    s.iterations_without_gain = 0 if gain else state.iterations_without_gain + 1
    # RELION's test of the hidden variables: the poses have settled when their mean change is under
    # 40% of the angular step or no longer 3% below its smallest yet (a median would hide the few
    # particles still jumping between views)
    change = measured.angular_change
    settled = change < 0.4 * angular_step(state.order) or 1.03 * change >= state.smallest_angular_change
    s.smallest_angular_change = min(change, state.smallest_angular_change)
    if state.iteration > 0 and s.iterations_without_gain >= 1 and settled:
        if fine_enough(state, settings, measured.accuracy_rotation):
            s.final = True
        else:
            s.order += 1
            s.offset_step, s.offset_range = finer_offsets(state, settings, measured, apix)
            s.iterations_without_gain = 0
            s.smallest_angular_change = float("inf")
    if s.iteration >= settings.max_iterations - 1:
        s.final = True
    k = n * apix / resolution if math.isfinite(resolution) else 1
    s.r_current = int(min(n // 2, max(s.r_current, math.ceil(k) + settings.resolution_margin)))
    return s


# --- files ---------------------------------------------------------------------------------


def write_data_star(path: Path, particles: Particles, subsets: np.ndarray, result: IterationResult) -> None:
    """The particles with an iteration's poses and their half sets (N,) (1 or 2)."""
    particles.with_poses(
        result.rotations, result.origins, result.max_prob, rlnRandomSubset=subsets.astype(int)
    ).write(path)


def write_model_star(path: Path, state: RefineState, n: int, apix: float, resolution: float) -> None:
    fsc = np.asarray(state.fsc)
    general = {
        "rlnReferenceDimensionality": 3,
        "rlnOriginalImageSize": n,
        "rlnCurrentResolution": resolution,
        "rlnCurrentImageSize": 2 * state.r_current,
        "rlnPixelSize": apix,
        "rlnNrClasses": 1,
        "rlnNrBodies": 1,
        "rlnTau2FudgeFactor": 1.0,
    }
    classes: dict[str, list] = {
        "rlnReferenceImage": ["run_class001.mrc"],
        "rlnClassDistribution": [1.0],
        "rlnEstimatedResolution": [resolution],
    }
    curve = {
        "rlnGoldStandardFsc": fsc,
        "rlnSsnrMap": fsc.clip(0, 0.999) / (1 - fsc.clip(0, 0.999)),
        "rlnSigma2Noise": np.asarray(state.sigma2).mean(0),
    }
    model_star.write_model_star(path, general, classes, [curve], state.sigma2, n, apix)


def write_final_maps(
    out: Path,
    result: IterationResult,
    state: RefineState,
    settings: RefineSettings,
    *,
    denoiser: Denoiser | None,
    n: int,
    apix: float,
) -> None:
    """The last iteration's maps under RELION's final names (the unfiltered half maps, the joined
    map, Blush's denoised one beside it) and run_model.star."""
    unreg, joined = result.unregularised, result.joined
    assert joined is not None, "the final maps come from the final iteration, which joins the halves"
    write_map(out / "run_half1_class001_unfil.mrc", unreg[0], apix)
    write_map(out / "run_half2_class001_unfil.mrc", unreg[1], apix)
    write_map(out / "run_class001.mrc", joined, apix)
    if denoiser is not None and result.joined_unregularised is not None:  # beside it, as RELION 5 writes it
        denoised = blush_reference(
            result.joined_unregularised,
            joined,
            torch.tensor(state.fsc),
            denoiser,
            apix,
            particle_diameter(settings.diameter, n, apix),
            trailing=settings.blush_trailing,
            fill=settings.blush_fill,
        )
        write_map(out / "run_class001_blush.mrc", denoised * solvent_mask(settings, n, apix), apix)
    write_model_star(
        out / "run_model.star", state, n, apix, resolution_at(torch.tensor(state.fsc), 0.143, n, apix)
    )


def write_iteration(
    out: Path,
    it: int,
    result: IterationResult,
    state: RefineState,
    settings: RefineSettings,
    *,
    particles: Particles,
    subsets: np.ndarray,
    denoiser: Denoiser | None,
) -> None:
    """An iteration's files, the checkpoint (optimiser.json) last; the final maps and run_data.star
    before it on the last iteration, so that a run killed while writing them redoes that iteration."""
    n, apix = particles.image_size, particles.pixel_size
    for h in (1, 2):
        write_map(iteration_path(out, it, f"half{h}_class001.mrc"), result.references[h - 1], apix)
    write_data_star(iteration_path(out, it, "data.star"), particles, subsets, result)
    if state.done:
        write_final_maps(out, result, state, settings, denoiser=denoiser, n=n, apix=apix)
        write_data_star(out / "run_data.star", particles, subsets, result)
    write_json(
        iteration_path(out, it, "optimiser.json"), {"state": state.to_json(), "settings": asdict(settings)}
    )


# --- the driver ----------------------------------------------------------------------------


def history_record(
    state: RefineState,
    settings: RefineSettings,
    iteration: int,
    resolution: float,
    result: IterationResult,
    seconds: float,
    n: int,
    apix: float,
) -> Refine3DRecord:
    """The history's record of the iteration that ran from `state` and took `seconds`."""
    measured = result.measured
    return Refine3DRecord(
        iteration=iteration,
        resolution=resolution,
        healpix_order=state.order,
        angular_step=angular_step(state.order),
        local=searches_locally(state, settings),
        offset_step=state.offset_step,
        offset_range=state.offset_range,
        r_current=n // 2 if state.final else state.r_current,
        angular_change=measured.angular_change,
        offset_change=measured.offset_change,
        accuracy_rotation=measured.accuracy_rotation,
        accuracy_translation_angstrom=measured.accuracy_translation * apix,
        seconds=round(seconds, 1),
        expectation_seconds=round(result.expectation_seconds, 1),
        maximization_seconds=round(
            seconds - result.expectation_seconds - result.blush_seconds - result.accuracy_seconds, 1
        ),
        accuracy_seconds=round(result.accuracy_seconds, 1),
        blush=blush_active(state, settings),
        blush_seconds=round(result.blush_seconds, 1),
        **peak_memory_gb(settings.device),
    )


HOW_NOT_WHAT = ("device", "memory_gb", "batch_size", "max_iterations")  # settings a --continue may change


def run_identity(particles: Particles, reference: torch.Tensor, settings: RefineSettings) -> RunIdentity:
    """What defines a refinement, for its run folder (run_folder.py)."""
    inputs = input_fingerprints(
        particles, reference, mask=settings.mask, blush_weights=settings.blush_weights
    )
    return RunIdentity.of("refine3d", inputs, settings, ignore=HOW_NOT_WHAT + ("mask", "blush_weights"))


def refine(
    particles: Particles,
    reference: torch.Tensor,
    reference_apix: float,
    settings: RefineSettings,
    out_dir: str | Path,
    control: RunControl = RunControl(),
) -> dict:
    """Gold-standard auto-refinement; writes RELION's files into `out_dir` (held for this run while
    it runs: run_folder.py) and returns the summary. Under torch.distributed (`world`, from
    distributed.start) the ranks share the particles and rank 0 writes and logs."""
    check_reference(reference, reference_apix, particles, "align the particles to")
    # refused before the run folder is touched
    particle_diameter(settings.diameter, particles.image_size, particles.pixel_size)
    identity = run_identity(particles, reference, settings)
    with control.holding(out_dir, identity) as run:
        return _refine(particles, reference, settings, Path(out_dir), run)


def _refine(
    particles: Particles,
    reference: torch.Tensor,
    settings: RefineSettings,
    out: Path,
    run: RunControl,
) -> dict:
    t_mark = time.time()  # the last checkpoint's time in this process (wall_seconds counts from it)
    torch.manual_seed(settings.seed)
    n, apix = particles.image_size, particles.pixel_size
    start_it = last_checkpoint(out) if run.resume else None
    if start_it is not None:
        state = RefineState.from_json(
            json.loads(iteration_path(out, start_it, "optimiser.json").read_text())["state"]
        )
        data = Particles.read(iteration_path(out, start_it, "data.star"))
        subsets = data.half_sets()
        rotations, origins = data.rotations(), data.origins()
        references = [read_map(iteration_path(out, start_it, f"half{h}_class001.mrc"))[0] for h in (1, 2)]
        run.log(f"continuing after iteration {start_it}")
        if state.done and (out / "summary.json").exists():  # finished already: nothing to redo
            run.log("the refinement had finished; its outputs are in place")
            return json.loads((out / "summary.json").read_text())
        # finished but killed before its summary: the final maps went before the last checkpoint
    else:
        rng = np.random.default_rng(settings.seed)
        subsets = (
            particles.half_sets()
            if "rlnRandomSubset" in particles.table.columns
            else rng.permutation(np.arange(len(particles)) % 2 + 1)
        )
        rotations, origins = particles.start_rotations(), particles.origins()
        state = RefineState(
            order=settings.healpix_order,
            offset_range=settings.offset_range,
            offset_step=settings.offset_step,
            poses_given=particles.has_poses(),
            r_current=initial_radius(n, apix, settings.ini_high, settings.resolution_margin),
            sigma2=initial_sigma2(particles, n).tolist(),
            final=settings.max_iterations == 1,
        )  # --max-iter 1: that one is the final one
        start = low_pass(reference, settings.ini_high, apix)
        start = start * greyscale_scale(
            particles,
            start,
            torch.tensor(state.sigma2),
            state.r_current,
            state.order,
            state.offset_range,
            state.offset_step,
            settings.device,
        )
        references = [start, start.clone()]
    denoiser = load_denoiser(settings.blush_weights, settings.device) if settings.blush else None
    run.log(
        f"refine3d: {len(particles)} particles, {n} px at {apix:.3f} A, symmetry {settings.symmetry}, "
        f"device {settings.device}" + (f", Blush ({denoiser.source})" if denoiser else "")
    )
    while not state.done:
        t0 = time.time()
        use_blush = blush_active(state, settings)
        result = run_iteration(
            particles,
            references,
            state,
            settings,
            subsets,
            rotations,
            origins,
            progress=run.progress,
            denoiser=denoiser if use_blush else None,
            world=run.world,
        )
        resolution = resolution_at(result.measured.fsc, 0.143, n, apix)
        new = next_state(state, settings, resolution, result.measured, n, apix)
        entry = history_record(state, settings, new.iteration, resolution, result, time.time() - t0, n, apix)
        new.history = state.history + [entry]
        rotations, origins, references = result.rotations, result.origins, result.references
        it = new.iteration
        new.wall_seconds = state.wall_seconds + time.time() - t_mark
        if run.world.leader:
            write_iteration(
                out, it, result, new, settings, particles=particles, subsets=subsets, denoiser=denoiser
            )
        t_mark = time.time()
        run.log(
            f"iteration {it:3d}: resolution {resolution:6.2f} A  sampling {entry.angular_step:.2f} deg"
            f"{' local' if entry.local else ''}  offsets {entry.offset_step:.2f} px  "
            f"accuracy {entry.accuracy_rotation:.2f} deg {entry.accuracy_translation_angstrom:.2f} A  "
            f"angles changed {entry.angular_change:.2f} deg  offsets {entry.offset_change:.2f} px  "
            f"{entry.seconds:.0f} s" + (f" (Blush {entry.blush_seconds:.0f} s)" if entry.blush else "")
        )
        state = new
    # a record from before Blush's start was recorded (None) counts as Blush used
    if settings.blush and not any(e.blush is not False for e in state.history):
        run.log(
            f"warning: Blush was never used: the resolution never reached "
            f"{settings.blush_from_resolution:g} A "
            "(--blush-from-resolution)"
        )
    resolution = resolution_at(torch.tensor(state.fsc), 0.143, n, apix)
    summary = run_summary(
        iterations=state.iteration,
        settings=settings,
        particles=particles,
        box=n,
        apix=apix,
        world=run.world,
        wall_seconds=state.wall_seconds + time.time() - t_mark,
        history=history_json(state.history),
        resolution_angstrom=resolution,
        symmetry=settings.symmetry,
        finest_angular_step=min(e.angular_step for e in state.history),
    )
    if run.world.leader:
        write_json(out / "summary.json", summary)
    run.log(
        f"done: {state.iteration} iterations, gold-standard resolution {resolution:.2f} A, "
        f"{summary['wall_seconds']:.0f} s"
    )
    return summary
