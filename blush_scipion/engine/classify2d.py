"""2D classification (as relion_refine's 2D mode): EM over classes x in-plane angles x translations.

Per iteration: an E-step scores every image at every shift against every class average at every
in-plane angle (the two GEMMs of expectation.py; R = classes x angles columns) under a Gaussian
noise model with a variance sigma2 per shell and optics group, with the class distribution and
a Gaussian prior on the offsets as priors; the M-step puts the posterior-weighted, CTF-multiplied
images back at their angles (inplane.py), each over its group's sigma2, and divides by the
CTF^2 / sigma2 weights plus 1 / (tau2_fudge tau2), tau2 being each class's power spectrum
(RELION's regularisation). The E-step uses the shells where some class's SSNR
exceeds 1, plus a margin. Class averages are masked by the particle diameter and
re-centred on their centre of mass. The first references are random Gaussian blobs of the size and
contrast of random subsets' averages (RELION 4's start: those averages are round, and would take
every image equally at every angle). With Blush (`blush`), the next E-step's reference for each
class is instead its nearly unregularised average denoised by the 2D denoiser, trailed at the
class's resolution with the regularised average above it; the regularised averages are still what
run_classes.mrcs holds (and what tau2 comes from), Blush's references are in run_classes_blush.mrcs,
as 3D writes the plain and the denoised map. With `grad`, each iteration visits a mini-batch
(minibatch.py: RELION 4's VDAM schedule, as online EM), and the last one every particle. Every
iteration is checkpointed (RELION's run_itNNN_* names); `resume` continues from the last one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_path
from .blush.denoiser import Denoiser, denoise_images, load_denoiser
from .blush.trailing import trail_at
from .checkpoint import iteration_path, last_checkpoint, write_json
from .distributed import World
from .estep import BestPoses, GridSums, NoiseModel, ResidualSums, image_batches, noise_spectrum
from .expectation import log_likelihoods, posteriors, shift_phases, shifted, significant
from .fourier import (
    centred_radius_2d,
    irfft2_centered,
    phase_shift_2d,
    rfft2_centered,
    shell_sum,
)
from .fsc import last_ssnr_shell
from .history import Class2DRecord, DriverState
from .images import initial_radius, initial_sigma2, power_spectrum
from .inplane import (
    extract_rotated,
    fourier_images,
    hermitian_complete,
    images_from_fourier,
    insert_rotated,
)
from .inputs import check_classes, input_fingerprints
from .mask import circular_mask, particle_diameter
from .minibatch import FIRST_SUBSET, LAST_SUBSET, MiniBatchSchedule, SubsetRule, batch_rows, running_weights
from .model_star import write_classification_model_star
from .mrc import read_stack, write_stack
from .option import option
from .particles import Particles
from .projector import SlicePoints
from .run_folder import RunControl, RunIdentity
from .sampling import translation_grid
from .summary import finish_classification

PAD = 2
GRAD_SUMS = "grad_sums.safetensors"  # the mini-batch runs' running M-step sums (minibatch.py)
INACTIVITY = 0.1  # mini-batches: re-seed classes below this share of 1 / K (RELION's GUI)
GRAD_WRITE_ITER = 10  # mini-batches: write (and checkpoint) every so many iterations (RELION's GUI)


def subset_option(when: str, default: SubsetRule) -> Any:
    """A mini-batch size option, its default stated as the schedule applies it (minibatch.py)."""
    return option(
        None, f"particles per mini-batch {when} (default: {default})", kind="count", group="mini-batches"
    )


@dataclass(frozen=True)
class Class2DSettings:
    classes: int = option(10, "number of classes", kind="count", flag="k", group="classification")
    # no option(): --iter's default depends on --grad (cli/class2d.py)
    iterations: int = 25
    psi_step: float = option(6.0, "in-plane angular step", kind="positive", unit="degrees", group="sampling")
    offset_range: float = option(  # around each image's previous offset
        5.0, "translation search range", kind="non_negative", unit="px", group="sampling"
    )
    offset_step: float = option(1.0, "translation step", kind="positive", unit="px", group="sampling")
    tau2_fudge: float = option(  # RELION's --tau2_fudge (2 for 2D classification)
        2.0,
        "regularisation parameter T: higher trusts the data more",
        kind="positive",
        group="classification",
    )
    diameter: float | None = option(  # mask of images and class averages
        None,
        "particle diameter in A for the masks (default: 90% of the box)",
        kind="positive",
        unit="A",
        group="classification",
    )
    ini_high: float = option(
        25.0, "first iteration's resolution limit", kind="positive", unit="A", group="classification"
    )
    highres: float | None = option(
        None, "never use data beyond this resolution, A", kind="positive", unit="A", group="classification"
    )
    resolution_margin: int = 10  # E-step shells beyond the last with SSNR >= 1 (RELION's --incr_size)
    center_classes: bool = option(
        True, "do not re-centre the class averages", kind="flag", flag="no-center", group="classification"
    )
    init_blobs: bool = option(  # RELION 4's --no_init_blobs
        True,
        "start from the random subsets' averages instead of random blobs of their size and contrast",
        kind="flag",
        flag="no-init-blobs",
        group="classification",
    )
    batch_size: int = option(64, "images per E-step batch", kind="count", flag="batch", group="run")
    device: str = option("cpu", "cpu or cuda:N", kind="str", group="run")
    seed: int = option(0, "random seed of the initial classes", kind="int", group="run")
    blush: bool = option(
        False,
        "Blush for 2D: each class average is denoised by the 2D denoiser and trailed at its resolution",
        kind="flag",
        group="Blush",
    )
    blush_weights: str | None = option(
        None,
        "2D denoiser weights (.safetensors); default: those shipped with this package",
        kind="str",
        group="Blush",
    )
    grad: bool = option(  # minibatch.py: RELION's --grad
        False,
        "mini-batches for large sets (RELION's VDAM schedule as online EM); the last iteration "
        "uses every particle",
        kind="flag",
        group="mini-batches",
    )
    grad_ini_subset: int | None = subset_option("at first", FIRST_SUBSET)
    grad_fin_subset: int | None = subset_option("at the end", LAST_SUBSET)


@dataclass
class Class2DState(DriverState):
    record = Class2DRecord

    iteration: int = 0
    r_current: int = 0
    # (G, S): complex noise variance per optics group, shell
    sigma2: list[list[float]] = field(default_factory=list)
    sigma_offset: float = 2.0  # pixels, per axis
    distribution: list[float] = field(default_factory=list)  # (K,) class fractions
    resolution: list[float] = field(default_factory=list)  # (K,) A, last shell with SSNR >= 1
    # mini-batches: the running sums' [signal, noise] weights
    batch_weights: list[float] = field(default_factory=list)
    history: list[Class2DRecord] = field(default_factory=list)


@dataclass
class Assignment:
    """Each particle's best class, angle and offset, and its posterior maximum."""

    classes: torch.Tensor  # (N,) long, 0-based
    psi: torch.Tensor  # (N,) degrees
    origins: torch.Tensor  # (N, 2) pixels
    max_prob: torch.Tensor  # (N,)

    def updated(self, rows: np.ndarray, batch: Assignment) -> Assignment:
        """These assignments with `rows` replaced by a mini-batch's."""
        out = Assignment(*(getattr(self, f.name).clone() for f in fields(self)))
        for f in fields(self):
            getattr(out, f.name)[torch.as_tensor(rows)] = getattr(batch, f.name)
        return out


@dataclass
class Sums:
    """An E-step's M-step sums over a set of particles."""

    data: torch.Tensor  # (K, m, m) complex, CTF-multiplied images over sigma2, put back at their angles
    weight: torch.Tensor  # (K, m, m) CTF^2 / sigma2
    mass: torch.Tensor  # (K,) posterior mass per class
    offset2: float  # sum over particles of the expected squared offset (pixels^2)
    residual: torch.Tensor  # (G, n//2+1) sum w |X - C A|^2 at the best pose, per optics group
    residual_weight: torch.Tensor

    def mixed(self, batch: Sums, step: float, scale: float) -> Sums:
        """(1 - step) x these sums + step x scale x a mini-batch's (on-line EM; scale = N / B makes
        the batch's sums an unbiased estimate of the whole set's)."""
        return Sums(
            *(
                (1 - step) * getattr(self, f.name) + step * scale * getattr(batch, f.name)
                for f in fields(self)
            )
        )

    def reseeded(self, threshold: float, generator: torch.Generator) -> tuple[Sums, list[int]]:
        """Classes with less than `threshold` / K of the mass take half of the largest class's sums,
        with noise as large as the data's own added so that the two differ (RELION's
        --class_inactivity_threshold for mini-batches, where an unvisited class fades away).
        Returns the new sums and the re-seeded classes."""
        out = Sums(
            *(
                getattr(self, f.name).clone()
                if torch.is_tensor(getattr(self, f.name))
                else getattr(self, f.name)
                for f in fields(self)
            )
        )
        k = len(out.mass)
        inactive = [i for i in range(k) if out.mass[i] < threshold / k * out.mass.sum()]
        for i in inactive:
            j = int(torch.argmax(out.mass))
            for x in (out.data, out.weight, out.mass):
                x[j] *= 0.5
                x[i] = x[j]
            # data sums CTF X / sigma2 over images: their noise variance is the weight
            noise = torch.randn(out.data[i].shape, dtype=torch.complex64, generator=generator)
            out.data[i] += noise.to(out.data.device) * out.weight[i].sqrt()
        return out, inactive

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {f.name: torch.as_tensor(getattr(self, f.name)).contiguous() for f in fields(self)}
        tensors["data"] = torch.view_as_real(self.data).contiguous()
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, path: Path) -> Sums:
        from safetensors.torch import load_file

        t = load_file(str(path))
        return cls(
            data=torch.view_as_complex(t["data"]),
            weight=t["weight"],
            mass=t["mass"],
            offset2=float(t["offset2"]),
            residual=t["residual"],
            residual_weight=t["residual_weight"],
        )


def angles(step: float) -> torch.Tensor:
    """(J,) in-plane angles, degrees: 360 / round(360 / step) apart."""
    j = max(1, round(360 / step))
    return torch.arange(j, dtype=torch.float32) * (360.0 / j)


# --- E-step and its M-step sums ---------------------------------------------------------------


def expectation(
    particles: Particles,
    classes: torch.Tensor,
    origins: torch.Tensor,
    state: Class2DState,
    settings: Class2DSettings,
    *,
    progress: bool = True,
    world: World = World(),
) -> tuple[Sums, Assignment]:
    """Score every particle against classes (K, n, n) at every angle and shift; return the M-step
    sums and the best assignment (under torch.distributed each rank scores its share, and both come
    back whole on every rank)."""
    device = torch.device(settings.device)
    n, apix, k = particles.image_size, particles.pixel_size, classes.shape[0]
    noise = NoiseModel.at(n, state.r_current, torch.tensor(state.sigma2, dtype=torch.float32), device)
    points = noise.points
    psi = angles(settings.psi_step)
    j = len(psi)
    references = extract_rotated(fourier_images(classes.to(device), PAD), psi, points, PAD).reshape(k * j, -1)
    shifts = translation_grid(settings.offset_range, settings.offset_step).to(device)
    phases = shift_phases(shifts, points.coords, n)
    log_class = torch.log(torch.tensor(state.distribution, device=device).clamp(min=1e-8)).repeat_interleave(
        j
    )
    mask = circular_mask(n, particle_diameter(settings.diameter, n, apix) / (2 * apix), edge=5)
    sums, residuals = GridSums.zeros(k * j, noise), ResidualSums.zeros(noise)
    mass = torch.zeros(k * j, device=device)
    offset2 = torch.zeros((), dtype=torch.float64, device=device)
    rows_all = world.share(np.arange(len(particles)))
    best = BestPoses.empty(len(rows_all))
    for b in image_batches(
        particles,
        rows_all,
        origins[rows_all],
        noise,
        settings.batch_size,
        device,
        mask=mask,
        progress=progress,
    ):
        x_t = shifted(b.x, phases)  # (B, T, P)
        total = origins[b.rows].to(device)[:, None, :] + shifts[None]  # (B, T, 2)
        log_offset = -(total**2).sum(-1) / (2 * state.sigma_offset**2)
        scores = log_likelihoods(x_t, b.ctf, b.weight, references) + log_offset[:, :, None] + log_class
        probs, pmax, (bt, br) = posteriors(scores)
        ar = torch.arange(len(b.rows), device=device)
        best.add(b.at, br, total[ar, bt], pmax)
        probs = significant(probs)  # the M-step visits significant poses only
        offset2 += (probs.sum(2) * (total**2).sum(-1)).sum().double()
        residuals.add(x_t[ar, bt] - b.ctf * references[br], b)
        sums.add(probs, x_t, b)
        mass += probs.sum((0, 1))
    world.sum(sums.data, sums.weight, mass, residuals.sums, residuals.weights, offset2)
    data, weight_grid = put_back(sums.data.reshape(k, j, -1), sums.weight.reshape(k, j, -1), psi, points, n)
    r, best_origins, best_p = best.gathered(rows_all, len(particles), world)
    assignment = Assignment(r // j, psi[r % j], best_origins, best_p)
    return Sums(
        data,
        weight_grid,
        mass.reshape(k, j).sum(1).cpu(),
        float(offset2),
        residuals.sums.cpu(),
        residuals.weights.cpu(),
    ), assignment


def put_back(
    slices: torch.Tensor, slice_weights: torch.Tensor, psi: torch.Tensor, points: SlicePoints, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, J, P) summed images and CTF^2 per class and angle -> (K, m, m) Fourier sums."""
    k, m = slices.shape[0], PAD * n
    data = torch.zeros((k, m, m), dtype=torch.complex64, device=slices.device)
    weight = torch.zeros((k, m, m), device=slices.device)
    insert_rotated(data, weight, slices * points.weight, slice_weights * points.weight, psi, points, PAD)
    return hermitian_complete(data, weight)


def random_start(
    particles: Particles,
    k: int,
    settings: Class2DSettings,
    sigma2: torch.Tensor,
    generator: torch.Generator,
    *,
    progress: bool = True,
    world: World = World(),
) -> Sums:
    """RELION's start: each class the sums of a random subset of the images at random angles
    (initial_references makes the first references from them)."""
    device = torch.device(settings.device)
    n, apix = particles.image_size, particles.pixel_size
    noise = NoiseModel.at(n, n // 2, sigma2, device)
    psi = angles(settings.psi_step)
    j = len(psi)
    r = torch.randint(0, k * j, (len(particles),), generator=generator)
    mask = circular_mask(n, particle_diameter(settings.diameter, n, apix) / (2 * apix), edge=5)
    sums = GridSums.zeros(k * j, noise)
    mine = world.share(np.arange(len(particles)))
    for b in image_batches(
        particles,
        mine,
        particles.origins()[mine],
        noise,
        settings.batch_size,
        device,
        mask=mask,
        progress=progress,
        label="random averages",
    ):
        index = r[b.rows].to(device)
        sums.data.index_add_(0, index, b.x * b.ctf_over_noise)
        sums.weight.index_add_(0, index, b.ctf * b.ctf_over_noise)
    world.sum(sums.data, sums.weight)
    data, weight = put_back(sums.data.reshape(k, j, -1), sums.weight.reshape(k, j, -1), psi, noise.points, n)
    mass = torch.bincount(r // j, minlength=k).float()
    zero = torch.zeros(sigma2.shape, dtype=torch.float64)
    return Sums(data, weight, mass, 0.0, zero, zero)


INIT_BLOBS = 40  # Gaussians per initial reference (RELION 4's --init_blobs, its default)


def initial_references(
    sums: Sums, settings: Class2DSettings, n: int, apix: float, r_max: int, generator: torch.Generator
) -> torch.Tensor:
    """The first E-step's references (K, n, n), as RELION 4 makes them: each random subset's
    unregularised average (reconstruct without MAP) replaced by random Gaussian blobs (unless
    settings.init_blobs is off). The averages of images at random angles are round, so every image
    fits them equally at every angle and the first iterations cannot break that symmetry (round
    classes take no particles, or all of them); the blobs give each class a random, asymmetric shape
    of the averages' size and contrast."""
    averages, _ = class_averages(sums, None, r_max, settings.tau2_fudge, n)
    diameter = particle_diameter(settings.diameter, n, apix)
    mask = circular_mask(n, diameter / (2 * apix), edge=5)
    if not settings.init_blobs:
        return averages * mask
    return random_blobs(averages, diameter / apix, generator) * mask


def random_blobs(
    images: torch.Tensor, diameter: float, generator: torch.Generator, count: int = INIT_BLOBS
) -> torch.Tensor:
    """(K, n, n) -> (K, n, n): per image, `count` Gaussians (width diameter / (10 sqrt 2) px) at
    normal positions (sigma diameter / 7 px) about the centre, each as high as |image| where it
    sits; a positive set minus half a negative one, scaled to the image's standard deviation
    (RELION's SomGraph::make_blobs_2d; diameter in px)."""
    n = images.shape[-1]
    grid = torch.arange(n, dtype=torch.float32)
    out = []
    for image in images.cpu():
        layers = []
        for _ in range(2):
            centres = torch.randn(count, 2, generator=generator) * diameter / 7 + n // 2  # (count, 2) y, x
            inside = ((centres >= 0) & (centres < n)).all(1)
            at = centres.long().clamp(0, n - 1)
            height = torch.where(inside, image[at[:, 0], at[:, 1]].abs(), torch.zeros(()))
            gy = torch.exp(-(((grid[None] - centres[:, :1]) * 10 / diameter) ** 2))  # (count, n)
            gx = torch.exp(-(((grid[None] - centres[:, 1:]) * 10 / diameter) ** 2))
            layers.append(torch.einsum("b,by,bx->yx", height, gy, gx))
        blobs = layers[0] - layers[1] / 2
        out.append(blobs * image.std(unbiased=False) / blobs.std(unbiased=False).clamp(min=1e-30))
    return torch.stack(out)


# --- M-step ---------------------------------------------------------------------------------


def class_averages(
    sums: Sums, tau2: torch.Tensor | None, r_max: int, fudge: float, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regularised class averages (K, n, n) and each class's SSNR per shell (K, n//2+1).

    Average = data / (weight + 1 / (fudge tau2 pad^2)) per padded pixel (the pad^2: each image
    coefficient spreads its weight over pad^2 pixels of the padded grid, as in RELION). Without
    tau2 the average is unregularised (RELION's reconstruction without MAP: a floor of 1/1000 of each
    shell's mean weight), as the random start and Blush's input are. Shells past r_max stay empty.
    """
    m = sums.data.shape[-1]
    n_shells = n // 2 + 1
    shells = torch.round(centred_radius_2d(m, sums.data.device) / PAD).long().clamp(max=n_shells)
    counts = shell_sum(torch.ones_like(sums.weight[0]), shells, n_shells + 1).clamp(min=1)
    mean_weight = torch.stack([shell_sum(w, shells, n_shells + 1) for w in sums.weight]) / counts  # (K, S+1)
    if tau2 is None:
        regulariser = 1e-3 * mean_weight
    else:
        regulariser = torch.zeros_like(mean_weight)
        regulariser[:, :n_shells] = 1 / (fudge * tau2.clamp(min=1e-30) * PAD**2)
    regulariser[:, r_max + 1 :] = float("inf")
    regulariser = regulariser.clamp(min=1e-30)
    reg_grid = torch.stack([reg[shells] for reg in regulariser])
    images = images_from_fourier(sums.data / (sums.weight + reg_grid), n, PAD)
    ssnr = torch.zeros(len(images), n_shells)
    if tau2 is not None:
        ssnr = (fudge * tau2 * PAD**2 * mean_weight[:, :n_shells]).cpu()
        ssnr[:, r_max + 1 :] = 0
    return images.cpu(), ssnr


def recentre(images: torch.Tensor) -> torch.Tensor:
    """(K, n, n) class averages shifted so that the centre of mass of their positive density sits
    at the image centre (RELION's --center_classes)."""
    n = images.shape[-1]
    c = torch.arange(n, dtype=torch.float32) - n // 2
    density = images.clamp(min=0)
    total = density.sum((-2, -1)).clamp(min=1e-30)
    com = torch.stack([(density.sum(-2) * c).sum(-1), (density.sum(-1) * c).sum(-1)], dim=-1) / total[:, None]
    return irfft2_centered(phase_shift_2d(rfft2_centered(images), -com, n), n)


def maximisation(
    sums: Sums,
    previous: torch.Tensor,
    state: Class2DState,
    settings: Class2DSettings,
    n: int,
    apix: float,
    r_max: int,
    denoiser: Denoiser | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """New regularised class averages (K, n, n), masked and centred, tau2 from the `previous` ones;
    Blush's references for the next E-step (K, n, n), or None without a `denoiser`; and the averages'
    SSNR (K, n//2+1)."""
    tau2 = power_spectrum(previous.to(sums.data.device))
    images, ssnr = class_averages(sums, tau2, r_max, settings.tau2_fudge, n)
    diameter = particle_diameter(settings.diameter, n, apix)
    references = None
    if denoiser is not None:
        noisy, _ = class_averages(sums, None, r_max, settings.tau2_fudge, n)
        denoised, nyquist = denoise_images(noisy, apix, denoiser, diameter)
        references = torch.stack(
            [
                trail_at(d, r, int(k), nyquist, fill=True)
                for d, r, k in zip(denoised.cpu(), images, last_ssnr_shell(ssnr))
            ]
        )
    mask = circular_mask(n, diameter / (2 * apix), edge=5)
    return (
        masked_centred(images, mask, settings),
        None if references is None else masked_centred(references, mask, settings),
        ssnr,
    )


def masked_centred(images: torch.Tensor, mask: torch.Tensor, settings: Class2DSettings) -> torch.Tensor:
    if settings.center_classes:
        images = recentre(images * mask)
    return images * mask


def next_state(
    state: Class2DState, settings: Class2DSettings, sums: Sums, ssnr: torch.Tensor, n: int, apix: float
) -> Class2DState:
    s = replace(state)
    s.iteration += 1
    s.distribution = (sums.mass / sums.mass.sum()).tolist()
    if sums.residual_weight.sum() > 0:
        s.sigma2 = noise_spectrum(
            sums.residual, sums.residual_weight, torch.tensor(state.sigma2), state.r_current
        ).tolist()
        s.sigma_offset = float(
            np.clip(math.sqrt(sums.offset2 / (2 * float(sums.mass.sum()))), 0.5, settings.offset_range)
        )
    last = last_ssnr_shell(ssnr)
    s.resolution = [n * apix / max(int(x), 1) for x in last]
    limit = n // 2 if settings.highres is None else min(n // 2, int(n * apix / settings.highres))
    if settings.grad:
        # mini-batch estimates jump from one iteration to the next (a re-seeded class most): the
        # E-step follows the classes' SSNR averaged by their share, up or down
        mean_ssnr = (torch.as_tensor(s.distribution)[:, None] * ssnr).sum(0, keepdim=True)
        s.r_current = int(min(limit, int(last_ssnr_shell(mean_ssnr)[0]) + settings.resolution_margin))
    else:
        s.r_current = int(min(limit, max(int(last.max()) + settings.resolution_margin, s.r_current)))
    return s


# --- files ---------------------------------------------------------------------------------


def write_data_star(path: Path, particles: Particles, a: Assignment) -> None:
    apix = particles.pixel_size
    table = particles.table.drop(columns=["rlnAngleRot", "rlnAngleTilt"], errors="ignore").assign(
        rlnClassNumber=a.classes.numpy() + 1,
        rlnAnglePsi=a.psi.double().numpy(),
        rlnOriginXAngst=(a.origins[:, 0] * apix).double().numpy(),
        rlnOriginYAngst=(a.origins[:, 1] * apix).double().numpy(),
        rlnMaxValueProbDistribution=a.max_prob.double().numpy(),
    )
    Particles(table, particles.optics, particles.root, particles.source).write(path)


def write_model_star(
    path: Path,
    classes_file: str,
    state: Class2DState,
    ssnr: torch.Tensor,
    n: int,
    apix: float,
    tau2_fudge: float,
) -> None:
    """run_model.star of class averages in `classes_file` with their SSNR (K, n//2+1)."""
    k = len(state.distribution)
    write_classification_model_star(
        path,
        state,
        [f"{i + 1:06d}@{classes_file}" for i in range(k)],
        [{"rlnSsnrMap": ssnr[i].double().numpy()} for i in range(k)],
        dimensionality=2,
        n=n,
        pixel_size=apix,
        tau2_fudge=tau2_fudge,
    )


def write_iteration(
    out: Path,
    particles: Particles,
    images: torch.Tensor,
    references: torch.Tensor | None,
    a: Assignment,
    state: Class2DState,
    ssnr: torch.Tensor,
    settings: Class2DSettings,
    prefix: str,
) -> None:
    n, apix = particles.image_size, particles.pixel_size
    write_stack(out / f"{prefix}classes.mrcs", images, apix)
    if references is not None:
        write_stack(out / f"{prefix}classes_blush.mrcs", references, apix)
    write_data_star(out / f"{prefix}data.star", particles, a)
    write_model_star(
        out / f"{prefix}model.star", f"{prefix}classes.mrcs", state, ssnr, n, apix, settings.tau2_fudge
    )
    # written last: it marks the iteration done
    write_json(
        out / f"{prefix}optimiser.json",
        {"state": state.to_json(), "settings": asdict(settings), "ssnr": ssnr.tolist()},
    )


# --- the driver ----------------------------------------------------------------------------


def classify(
    particles: Particles,
    settings: Class2DSettings,
    out_dir: str | Path,
    control: RunControl = RunControl(),
) -> dict:
    """2D classification into settings.classes classes; writes RELION's files into `out_dir` (held
    for this run while it runs: run_folder.py) and returns the summary."""
    check_classes(particles, settings.classes)
    # refused before the run folder is touched
    particle_diameter(settings.diameter, particles.image_size, particles.pixel_size)
    inputs = input_fingerprints(particles, blush_weights=settings.blush_weights)
    identity = RunIdentity.of(
        "class2d", inputs, settings, ignore=("device", "batch_size", "iterations", "blush_weights")
    )  # may be extended
    with control.holding(out_dir, identity) as run:
        return _classify(particles, settings, Path(out_dir), run)


def _classify(
    particles: Particles,
    settings: Class2DSettings,
    out: Path,
    run: RunControl,
) -> dict:
    t_start = time.time()
    n, apix, k = particles.image_size, particles.pixel_size, settings.classes
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    start_it = last_checkpoint(out) if run.resume else None
    if start_it is not None:
        saved = json.loads(iteration_path(out, start_it, "optimiser.json").read_text())
        state = Class2DState.from_json(saved["state"])
        images = read_stack(iteration_path(out, start_it, "classes.mrcs"))
        blush_file = iteration_path(out, start_it, "classes_blush.mrcs")
        references = read_stack(blush_file) if settings.blush and blush_file.exists() else None
        saved = Particles.read(iteration_path(out, start_it, "data.star"))
        a = Assignment(
            saved.classes(),
            torch.as_tensor(saved.column("rlnAnglePsi").astype(np.float32)),
            saved.origins(),
            saved.max_prob(),
        )
        running = Sums.load(iteration_path(out, start_it, GRAD_SUMS)) if settings.grad else None
        run.log(f"continuing after iteration {start_it}")
    else:
        sigma2 = initial_sigma2(particles, n)
        state = Class2DState(
            sigma2=sigma2.tolist(),
            sigma_offset=max(1.0, settings.offset_range / 2),
            r_current=initial_radius(n, apix, settings.ini_high, settings.resolution_margin),
        )
        running = random_start(
            particles, k, settings, sigma2, generator, progress=run.progress, world=run.world
        )
        state.distribution = (running.mass / running.mass.sum()).tolist()
        state.batch_weights = [float(len(particles))] * 2
        images = initial_references(running, settings, n, apix, state.r_current, generator)
        references = None
        a = Assignment(
            torch.full((len(particles),), -1),
            torch.zeros(len(particles)),
            particles.origins(),
            torch.zeros(len(particles)),
        )
    schedule = (
        MiniBatchSchedule.for_set(
            len(particles), settings.iterations, settings.grad_ini_subset, settings.grad_fin_subset
        )
        if settings.grad
        else None
    )
    denoiser = load_denoiser(settings.blush_weights, settings.device, dim=2) if settings.blush else None
    run.log(
        f"class2d: {len(particles)} particles, {n} px at {apix:.3f} A, {k} classes, "
        f"{len(angles(settings.psi_step))} angles x "
        f"{len(translation_grid(settings.offset_range, settings.offset_step))}"
        f" shifts, device {settings.device}"
        + (f", Blush ({denoiser.source})" if denoiser else "")
        + (f", mini-batches of {schedule.ini_subset} to {schedule.fin_subset}" if schedule else "")
    )
    written = start_it
    while state.iteration < settings.iterations:
        t0, it = time.time(), state.iteration
        rows = batch_rows(len(particles), schedule.subset_size(it) if schedule else -1, settings.seed, it)
        batch = particles if len(rows) == len(particles) else particles.subset(rows)
        sums, b = expectation(
            batch,
            images if references is None else references,
            a.origins[rows],
            state,
            settings,
            progress=run.progress,
            world=run.world,
        )
        weights = [float(len(particles))] * 2
        reseeded: list[int] = []
        if len(rows) < len(particles):
            # only a schedule draws mini-batches, and with one there are running sums (--grad)
            assert schedule is not None and running is not None, "a mini-batch without --grad's running sums"
            signal, noise = state.batch_weights
            sums = running.mixed(sums, schedule.step(it), len(particles) / len(rows))
            weights = running_weights(signal, noise, schedule.step(it), len(particles), len(rows))
            sums, reseeded = sums.reseeded(
                INACTIVITY, torch.Generator().manual_seed(settings.seed * 100003 + it)
            )
        running = sums
        now = (
            replace(settings, tau2_fudge=schedule.tau2_fudge(it, settings.tau2_fudge))
            if schedule
            else settings
        )
        t_blush = time.time()
        images, references, ssnr = maximisation(sums, images, state, now, n, apix, state.r_current, denoiser)
        t_blush = time.time() - t_blush
        # the running sums stand for the whole set but hold the noise of fewer particles: the SSNR
        # (and so the resolution and the next E-step's shells) is that of those
        ssnr = ssnr * weights[0] / weights[1]
        new = next_state(state, now, sums, ssnr, n, apix)
        new.batch_weights = weights
        changed = float((b.classes != a.classes[rows]).float().mean())
        a = a.updated(rows, b)
        entry = Class2DRecord(
            iteration=new.iteration,
            resolution=min(new.resolution),
            r_current=state.r_current,
            particles=len(rows),
            class_changes=round(changed, 4),
            sigma_offset_px=round(new.sigma_offset, 2),
            seconds=round(time.time() - t0, 1),
            m_step_seconds=round(t_blush, 1),
        )
        new.history = state.history + [entry]
        writes = not schedule or new.iteration % GRAD_WRITE_ITER == 0 or new.iteration == settings.iterations
        if writes and run.world.leader:
            if schedule:  # before optimiser.json, which marks the iteration done; only the last one is kept
                running.save(iteration_path(out, new.iteration, GRAD_SUMS))
            write_iteration(
                out, particles, images, references, a, new, ssnr, now, f"run_it{new.iteration:03d}_"
            )
            if schedule and written is not None:
                iteration_path(out, written, GRAD_SUMS).unlink(missing_ok=True)
            written = new.iteration
        run.log(
            f"iteration {new.iteration:3d}: resolution {entry.resolution:6.2f} A  E-step to shell "
            f"{state.r_current}"
            + (f" on {len(rows)} particles" if schedule else "")
            + f"  classes changed {100 * changed:5.1f}%  offsets sigma {new.sigma_offset:.2f} px  "
            + (f"re-seeded {[c + 1 for c in reseeded]}  " if reseeded else "")
            + f"{entry.seconds:.0f} s"
            + (f" (M-step with Blush {t_blush:.0f} s)" if denoiser else "")
        )
        state = new
    finals = ["classes.mrcs", "data.star", "model.star"] + (
        ["classes_blush.mrcs"] if references is not None else []
    )
    return finish_classification(
        out,
        run.log,
        state,
        finals,
        world=run.world,
        settings=settings,
        particles=particles,
        wall_seconds=time.time() - t_start,
    )
