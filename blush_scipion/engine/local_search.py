"""Local pose searches with oversampling: RELION's auto-refine past --auto_local_healpix_order, with
its --oversampling 1.

Around each image's previous pose, a fine lattice of small rotations (rotation vectors on a cubic
grid, the angular step apart) and of shifts (the offset step apart), both holding the previous pose,
weighted by a Gaussian prior on the angle from it (RELION's sigma_ang: two angular steps, searched
to three sigmas). As RELION, in two passes: the coarse cells (2 x 2 x 2 rotations x 2 x 2 shifts)
are scored at their centres on the frequencies the coarse step can tell apart (RELION's coarse
size), then only each image's significant cells are scored child by child on all current
frequencies, and the posterior is theirs. Fine sampling costs a small multiple of coarse.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from .device import Device
from .expectation import plane_log_likelihoods, shift_phases, shifted, significant
from .projector import SlicePoints, extract_slice_planes, reference_channels
from .rotation import rotation_vector_matrix

FINE_ROTATIONS = 8  # children of a coarse rotation cell: +-1/4 of the coarse step on each axis
FINE_SHIFTS = 4  # children of a coarse shift: +-1/4 of the coarse step in x and y


def _corners(dim: int, half_width: float) -> torch.Tensor:
    """(2^dim, dim) the corners of a cube of side 2 half_width."""
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=dim)), dtype=torch.float64) * half_width


def cell_children(step: float, offset_step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The children of a coarse cell of a grid of steps `step` (degrees) and `offset_step` (pixels),
    as RELION's --oversampling 1 samples it at half the steps: (8, 3, 3) rotations D to apply on the
    left (D R) and (4, 2) shifts to add, a quarter of the step off the centre on every axis."""
    return rotation_vector_matrix(_corners(3, step / 4)).float(), _corners(2, offset_step / 4).float()


@dataclass(frozen=True)
class LocalSampling:
    """Poses relative to an image's previous one (rotations act on the left: R = D R_prev)."""

    step: float  # degrees: the fine angular step
    offset_step: float  # pixels: the fine offset step
    rotations: torch.Tensor  # (J, 3, 3) coarse rotation cells, nearest the previous pose first
    log_prior: torch.Tensor  # (J,) Gaussian prior on their angle
    fine_rotations: torch.Tensor  # (J, 8, 3, 3) each cell's children
    fine_log_prior: torch.Tensor  # (J, 8)
    shifts: torch.Tensor  # (T, 2) coarse shifts in pixels, nearest first
    fine_shifts: torch.Tensor  # (T, 4, 2) each shift's children

    @classmethod
    def around(
        cls,
        step: float,
        offset_range: float,
        offset_step: float,
        *,
        sigma_steps: float = 2.0,
        sigmas: float = 3.0,
        device: Device | None = None,
    ) -> LocalSampling:
        """Fine steps `step` (degrees) and `offset_step` (pixels); the prior's sigma is `sigma_steps`
        steps (RELION: 2) and the lattice reaches `sigmas` sigmas (RELION: 3).

        The fine lattices (rotation vectors on a cubic grid `step` apart, shifts on a square grid
        `offset_step` apart) hold the previous pose itself, so that a particle whose pose is right
        keeps it; the coarse cells are their 2 x 2 (x 2) blocks, evaluated at their centres."""
        v = _cell_centres(3, 2 * step, sigmas * sigma_steps * step)  # (J, 3) degrees
        fine_v = v[:, None] + _corners(3, step / 2)[None]  # (J, 8, 3)
        shifts = _cell_centres(2, 2 * offset_step, offset_range)
        fine_shifts = shifts[:, None] + _corners(2, offset_step / 2)[None]

        def prior(vectors: torch.Tensor) -> torch.Tensor:
            return (-(vectors**2).sum(-1) / (2 * (sigma_steps * step) ** 2)).float()

        return cls(
            step,
            offset_step,
            rotation_vector_matrix(v).to(device),
            prior(v).to(device),
            rotation_vector_matrix(fine_v).to(device),
            prior(fine_v).to(device),
            shifts.float().to(device),
            fine_shifts.float().to(device),
        )


def _cell_centres(dim: int, size: float, radius: float) -> torch.Tensor:
    """(C, dim) centres of the cells of side `size` (blocks of 2^dim points of the lattice of
    spacing size / 2 through the origin) whose centre lies within `radius`; nearest first."""
    reach = math.floor(radius / size + 1)
    k = torch.arange(-reach, reach + 1, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[k] * dim, indexing="ij"), dim=-1).reshape(-1, dim)
    centres = (grid + 0.25) * size
    centres = centres[(centres**2).sum(1) <= radius**2 + 1e-6]
    return centres[torch.argsort((centres**2).sum(1), stable=True)]


def coarse_radius(step: float, diameter: float, n: int, apix: float) -> float:
    """Fourier radius (pixels) of RELION's coarse size for a fine step (degrees): where the coarse
    step (twice it) moves the particle's edge by 1.2 times the resolution."""
    rotated_distance = (2 * step / 360) * math.pi * diameter
    return n * apix / (rotated_distance / 1.2)


@dataclass
class LocalResult:
    """One batch's poses and M-step slices."""

    rotations: torch.Tensor  # (B, 3, 3) the most probable pose
    shifts: torch.Tensor  # (B, 2) its shift from the previous origin, pixels
    max_prob: torch.Tensor  # (B,)
    residual: torch.Tensor  # (B, P) complex: image minus CTF x projection at that pose
    slice_rotations: torch.Tensor  # (K, 3, 3) poses to back-project at
    slices: torch.Tensor  # (K, P) complex: posterior-weighted, noise-weighted CTF x images
    slice_weights: torch.Tensor  # (K, P) posterior-weighted CTF^2 over noise
    classes: torch.Tensor  # (B,) long: the most probable pose's reference (0 with one)
    slice_classes: torch.Tensor  # (K,) long: each slice's reference
    mass: torch.Tensor  # (B, C) posterior mass of each image's cells (summed over their children)
    shift_posterior: torch.Tensor  # (B, T, 4) each fine shift's posterior (summed over rotations)


@dataclass(frozen=True)
class Cells:
    """Each image's significant coarse cells, to be sampled child by child: (B, C) each, C the most
    any image of the batch keeps (the others' extra cells have probability 0)."""

    probability: torch.Tensor  # (B, C) coarse posterior; 0: not significant
    shift: torch.Tensor  # (B, C) long: the coarse shift (an index into the fine shifts' first axis)
    rotations: torch.Tensor  # (B, C, 8, 3, 3) the cell's fine rotations
    log_prior: torch.Tensor  # (B, C, 8) their log prior (orientation, class)
    reference: torch.Tensor | None = None  # (B, C) long: which reference (classes); None: the one
    # (B, C) long: the coarse orientation (and reference) whose children the cell holds; an image's
    # cells at several shifts of one orientation share its projections and slices. None: all distinct
    column: torch.Tensor | None = None

    @classmethod
    def top(cls, probs: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, J) significant coarse posteriors -> the (B, C) probability, shift and column of
        each image's C most probable cells, C = min(count, the most any image keeps)."""
        b, _, j = probs.shape
        flat = probs.reshape(b, -1)
        c = max(1, min(count, int((flat > 0).sum(1).max())))
        p, top = flat.topk(c, dim=1)  # t J + j
        return p, top // j, top % j


def local_search(
    reference: torch.Tensor,
    images: torch.Tensor,
    ctf: torch.Tensor,
    weight: torch.Tensor,
    ctf_over_noise: torch.Tensor,
    previous: torch.Tensor,
    sampling: LocalSampling,
    points: SlicePoints,
    *,
    coarse_radius: float | None = None,
    cells: int = 32,
    pad: int = 2,
) -> LocalResult:
    """E-step of a batch around its previous poses, coarse then fine, and its M-step slices.

    reference: the projector's Fourier volume (or its reference_channels); images: (B, P) complex
    transforms at their previous origins; ctf: (B, P); weight: (B, P) Hermitian weight over noise
    variance (the likelihood's); ctf_over_noise: (B, P) CTF over noise variance (the M-step's);
    previous: (B, 3, 3); the coarse pass uses the points within `coarse_radius` (default: all);
    at most `cells` significant coarse cells per image are sampled finely.
    """
    channels = reference_channels(reference) if reference.is_complex() else reference
    n = points.n
    near = points.selection(coarse_radius if coarse_radius is not None else n)
    coarse_points = points.subset(near)
    coarse_rot = sampling.rotations[None] @ previous[:, None]  # (B, J, 3, 3)
    planes = extract_slice_planes(channels, coarse_rot, coarse_points, pad)  # (2, B, P', J)
    coarse_images = shifted(images[:, near], shift_phases(sampling.shifts, coarse_points.coords, n))
    scores = plane_log_likelihoods(coarse_images, ctf[:, near], weight[:, near], planes) + sampling.log_prior
    del planes
    b, t, j = scores.shape
    kept = significant(torch.softmax(scores.reshape(b, -1), dim=1).reshape(b, t, j))
    top_p, top_t, top_j = Cells.top(kept, cells)
    return fine_pass(
        [channels],
        images,
        ctf,
        weight,
        ctf_over_noise,
        Cells(
            top_p,
            top_t,
            sampling.fine_rotations[top_j] @ previous[:, None, None],
            sampling.fine_log_prior[top_j],
            column=top_j,
        ),
        sampling.fine_shifts,
        points,
        pad=pad,
    )


def fine_pass(
    channels: list[torch.Tensor],
    images: torch.Tensor,
    ctf: torch.Tensor,
    weight: torch.Tensor,
    ctf_over_noise: torch.Tensor,
    cells: Cells,
    fine_shifts: torch.Tensor,
    points: SlicePoints,
    *,
    shift_log_prior: torch.Tensor | None = None,
    pad: int = 2,
) -> LocalResult:
    """The oversampled pass of a batch: each image's significant coarse `cells` scored child by child
    (8 rotations x 4 shifts) on all `points`, their posterior, best pose and M-step slices.

    channels: one reference_channels per reference; images, ctf, weight, ctf_over_noise as
    local_search's; fine_shifts: (T, 4, 2) each coarse shift's children, pixels, from the images'
    origins; shift_log_prior: (B, T, 4) a prior on them (RELION's offset prior), if any."""
    b, p = images.shape
    k = cells.probability.shape[1]
    n = points.n
    ar = torch.arange(b, device=images.device)
    reference = cells.reference if cells.reference is not None else torch.zeros_like(cells.shift)
    # each image's distinct orientations (slots): projections are read, and slices summed, once each
    slot, first = _slots(cells)  # (B, K) each cell's slot, (B, U) a cell of each slot
    u = first.shape[1]
    slot_reference = reference[ar[:, None], first]  # (B, U)
    listed = cells.rotations[ar[:, None], first].reshape(b, -1, 3, 3)  # (B, U 8, 3, 3)
    planes = extract_slice_planes(channels[0], listed, points, pad)  # (2, B, P, U 8)
    for c in range(1, len(channels)):  # each slot's projection from its own reference
        mine = (slot_reference == c).repeat_interleave(FINE_ROTATIONS, dim=1)  # (B, U 8)
        planes = torch.where(
            mine[None, :, None, :], extract_slice_planes(channels[c], listed, points, pad), planes
        )
    # every image at every fine shift (T x 4), scored against all its fine projections in one GEMM;
    # each cell's (shift child, rotation child) scores are read out of it
    t = fine_shifts.shape[0]
    x_all = shifted(images, shift_phases(fine_shifts.reshape(-1, 2), points.coords, n))
    all_scores = plane_log_likelihoods(x_all, ctf, weight, planes)
    all_scores = all_scores.reshape(b, t, FINE_SHIFTS, u, FINE_ROTATIONS)
    fine = all_scores[ar[:, None], cells.shift, :, slot, :]  # (B, K, 4, 8)
    fine = fine + cells.log_prior[:, :, None, :]
    if shift_log_prior is not None:
        fine = fine + shift_log_prior[ar[:, None], cells.shift][..., None]
    fine = fine.masked_fill((cells.probability == 0)[..., None, None], -torch.inf)  # cells not significant
    probs = torch.softmax(fine.reshape(b, -1), dim=1).reshape(b, k, FINE_SHIFTS, FINE_ROTATIONS)
    # significant fine poses (shifts as RELION's translations, the rest as orientations)
    probs = significant(probs.transpose(1, 2).reshape(b, FINE_SHIFTS, -1))
    probs = probs.reshape(b, FINE_SHIFTS, k, FINE_ROTATIONS).transpose(1, 2)  # (B, K, 4, 8)

    best = probs.reshape(b, -1).argmax(1)
    bk, bf, br = (
        best // (FINE_SHIFTS * FINE_ROTATIONS),
        best % (FINE_SHIFTS * FINE_ROTATIONS) // FINE_ROTATIONS,
        best % FINE_ROTATIONS,
    )
    bt, column = cells.shift[ar, bk], slot[ar, bk] * FINE_ROTATIONS + br
    projection = torch.complex(planes[0, ar, :, column], planes[1, ar, :, column])  # (B, P)
    residual = x_all.reshape(b, t, FINE_SHIFTS, p)[ar, bt, bf] - ctf * projection
    shift_posterior = probs.new_zeros(b, t, FINE_SHIFTS)
    shift_posterior.index_put_(
        (ar[:, None].expand_as(cells.shift), cells.shift), probs.sum(3), accumulate=True
    )

    # M-step slices: each slot's fine rotations' images, weighted by their posterior at each shift
    # they were scored at, summed: one GEMM of the (rotation, shift) posteriors with the shifted images
    # (a significant cell is one (slot, coarse shift) pair: only cells of zero posterior share a place)
    q = probs.new_zeros(b, u, t, FINE_ROTATIONS, FINE_SHIFTS)
    q.index_put_((ar[:, None].expand_as(slot), slot, cells.shift), probs.transpose(2, 3), accumulate=True)
    q = q.permute(0, 1, 3, 2, 4).reshape(b, u * FINE_ROTATIONS, t * FINE_SHIFTS)
    y = torch.view_as_real(x_all * ctf_over_noise[:, None]).reshape(b, t * FINE_SHIFTS, 2 * p)
    slices = torch.view_as_complex(torch.bmm(q, y).reshape(b, u, FINE_ROTATIONS, p, 2))
    cell_mass = probs.sum(2)  # (B, K, 8)
    mass = cell_mass.new_zeros(b, u, FINE_ROTATIONS).scatter_add_(
        1, slot[..., None].expand_as(cell_mass), cell_mass
    )  # (B, U, 8)
    keep = mass > 0
    owner = ar[:, None, None].expand_as(mass)[keep]
    return LocalResult(
        cells.rotations[ar, bk, br],
        fine_shifts[bt, bf],
        probs.reshape(b, -1).max(1).values,
        residual,
        cells.rotations[ar[:, None], first][keep],
        slices[keep],
        mass[keep][:, None] * (ctf * ctf_over_noise)[owner],
        reference[ar, bk],
        slot_reference[:, :, None].expand_as(mass)[keep],
        cell_mass.sum(2),
        shift_posterior,
    )


def _slots(cells: Cells) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) the slot of each cell among its image's distinct columns (cells not significant join
    the image's first cell's), and (B, U) one cell of each slot, U the most distinct columns any image
    has (an image with fewer repeats its first cell's)."""
    b, k = cells.probability.shape
    if cells.column is None:
        every = torch.arange(k, device=cells.shift.device).expand(b, k)
        return every, every
    column = torch.where(cells.probability > 0, cells.column, cells.column[:, :1])
    ordered, order = column.sort(dim=1, stable=True)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    slot = torch.empty_like(order).scatter_(1, order, new.cumsum(1) - 1)
    cell = torch.arange(k, device=slot.device).expand(b, k)
    first = torch.full((b, int(slot.max()) + 1), k, dtype=torch.long, device=slot.device)
    first.scatter_reduce_(1, slot, cell, reduce="amin")  # each slot's first cell
    return slot, first.masked_fill(first == k, 0)
