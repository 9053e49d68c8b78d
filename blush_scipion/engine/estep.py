"""The E-step skeleton every EM driver runs (refine3d, class2d, class3d): the noise model at the
E-step's radius, the particle images batch by batch, and the sums a batch adds for the M-step.

A driver scores each batch against its own references (orientations, classes x orientations,
classes x in-plane angles: expectation.py's GEMMs), and hands the posteriors to these pieces:

    noise = NoiseModel.at(n, r_max, sigma2, device)
    sums, residual = GridSums.zeros(R, noise), ResidualSums.zeros(noise)
    for batch in image_batches(particles, rows, origins, noise, size, device):
        x_t = shifted(batch.x, phases)
        probs, pmax, (bt, br) = posteriors(log_likelihoods(x_t, batch.ctf, batch.weight, projections))
        sums.add(significant(probs), x_t, batch)
        residual.add(x_t[range, bt] - batch.ctf * projections[br], batch)
    world.sum(sums.data, sums.weight, residual.sums, residual.weights)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .device import Device
from .expectation import weighted_sums
from .images import group_index, image_batch, noise_weighted_points, residual_power
from .mrc import StackReader
from .particles import Particles
from .projector import SlicePoints


@dataclass(frozen=True)
class NoiseModel:
    """The Gaussian noise model on the E-step's points: a complex variance per shell and optics
    group (G, S), seen as each point's likelihood weight (its Hermitian weight over the variance)
    and its inverse variance, with which an image weighs into the M-step (as in RELION)."""

    points: SlicePoints
    shells: torch.Tensor  # (P,) long, each point's shell
    weight: torch.Tensor  # (G, P) Hermitian weight / sigma2
    inverse: torch.Tensor  # (G, P) 1 / sigma2
    n: int  # image size, px

    @classmethod
    def at(cls, n: int, r_max: int, sigma2: torch.Tensor, device: Device) -> NoiseModel:
        """The points within `r_max` of an n px image and the (G, S) spectra `sigma2`."""
        points, shells, weight = noise_weighted_points(n, r_max, sigma2, device)
        return cls(points, shells, weight, 1 / sigma2.to(device)[:, shells], n)

    @property
    def groups(self) -> int:
        return self.weight.shape[0]


@dataclass(frozen=True)
class ImageBatch:
    """One batch of particle images on the E-step's points, shifted by their current origins."""

    rows: np.ndarray  # (B,) the particles' rows
    at: slice  # their places in the pass's rows
    x: torch.Tensor  # (B, P) complex centred transforms
    ctf: torch.Tensor  # (B, P)
    groups: torch.Tensor  # (B,) long, optics group 0 .. G-1
    weight: torch.Tensor  # (B, P) each image's likelihood weight (its group's)
    inverse_noise: torch.Tensor  # (B, P)

    @property
    def ctf_over_noise(self) -> torch.Tensor:
        """(B, P) CTF / sigma2: what multiplies an image on its way into the M-step's sums."""
        return self.ctf * self.inverse_noise


def image_batches(
    particles: Particles,
    rows: np.ndarray,
    origins: torch.Tensor,
    noise: NoiseModel,
    size: int,
    device: Device,
    *,
    mask: torch.Tensor | None = None,
    progress: bool = False,
    label: str = "E-step",
) -> Iterator[ImageBatch]:
    """The images of `rows` (with their `origins` (len(rows), 2), px) in batches of `size`, read from
    their stacks as they are needed (memory does not grow with the number of particles); `mask`
    (n, n) multiplies the images first."""
    groups = torch.as_tensor(group_index(particles)[rows], device=device)
    ctf = particles.ctf(rows)  # once per pass: per-batch column look-ups cost O(N)
    with StackReader() as reader:
        for start in tqdm(
            range(0, len(rows), size), desc=f"  {label}", unit="batch", disable=not progress, leave=False
        ):
            sel = slice(start, start + size)
            x, c = image_batch(
                particles,
                rows[sel],
                reader,
                origins[sel],
                ctf[sel],
                noise.points,
                particles.pixel_size,
                device,
                mask,
            )
            g = groups[sel]
            yield ImageBatch(rows[sel], sel, x, c, g, noise.weight[g], noise.inverse[g])


@dataclass
class GridSums:
    """The M-step's sums over a grid of R columns (orientations, or classes x poses): per column
    the posterior-weighted CTF x image / sigma2 (R, P) and CTF^2 / sigma2 (R, P)."""

    data: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def zeros(cls, columns: int, noise: NoiseModel) -> GridSums:
        p, device = noise.points.index.shape[0], noise.weight.device
        return cls(
            torch.zeros(columns, p, dtype=torch.complex64, device=device),
            torch.zeros(columns, p, device=device),
        )

    def add(self, probs: torch.Tensor, images_t: torch.Tensor, batch: ImageBatch) -> None:
        """Add a batch's images (B, T, P) at every shift, weighted by its posteriors (B, T, R),
        zero outside the significant poses (expectation.significant)."""
        c = batch.ctf_over_noise
        weighted_sums(probs, images_t * c[:, None, :], batch.ctf * c, self.data, self.weight)

    def used(self) -> torch.Tensor:
        """(R,) bool: the columns some image weighs on."""
        return (self.weight > 0).any(1)


@dataclass
class ResidualSums:
    """Per optics group and shell, the sums of w |X - C A|^2 at each image's best pose and of w
    (float64, (G, n//2+1)): their ratio is the next noise spectrum."""

    sums: torch.Tensor
    weights: torch.Tensor
    noise: NoiseModel

    @classmethod
    def zeros(cls, noise: NoiseModel) -> ResidualSums:
        shape = (noise.groups, noise.n // 2 + 1)
        return cls(
            torch.zeros(shape, dtype=torch.float64, device=noise.weight.device),
            torch.zeros(shape, dtype=torch.float64, device=noise.weight.device),
            noise,
        )

    def add(self, residual: torch.Tensor, batch: ImageBatch) -> None:
        """(B, P) complex residuals of a batch's images at their best poses."""
        sums, counts = residual_power(
            residual, self.noise.points, self.noise.shells, self.noise.n, batch.groups, self.noise.groups
        )
        self.sums += sums
        self.weights += counts

    def spectrum(self, previous: torch.Tensor, r_max: int) -> torch.Tensor:
        """(G, S) the new noise spectra (noise_spectrum)."""
        return noise_spectrum(self.sums, self.weights, previous, r_max)


def noise_spectrum(
    sums: torch.Tensor, weights: torch.Tensor, previous: torch.Tensor, r_max: int
) -> torch.Tensor:
    """(G, S) residual power sums and their weights (summed over batches, ranks, half sets) -> the new
    noise spectra within `r_max` shells; `previous` (G, S) beyond, and where a group's shell got no
    weight (no data there: a zero variance would weigh it infinitely in the next E-step)."""
    weights = weights.cpu()
    new = (sums.cpu() / weights.clamp(min=1e-9)).float()
    inside = (torch.arange(previous.shape[-1]) <= r_max)[None]
    return torch.where(inside & (weights > 0), new, previous.float())


@dataclass
class BestPoses:
    """Each image's best column (of R), origin (px) and posterior maximum for the N rows of a pass,
    written batch by batch into arrays made once; whole on every rank once `gathered`. (Kept as one
    small tensor per batch instead, they pinned the allocator's heap between the batches' large
    temporaries, and a pass's resident memory grew by about an image per particle.)"""

    columns: torch.Tensor  # (N,) long
    origins: torch.Tensor  # (N, 2)
    max_prob: torch.Tensor  # (N,)

    @classmethod
    def empty(cls, count: int) -> BestPoses:
        return cls(torch.zeros(count, dtype=torch.long), torch.zeros(count, 2), torch.zeros(count))

    def add(self, at: slice, columns: torch.Tensor, origins: torch.Tensor, max_prob: torch.Tensor) -> None:
        """A batch's (B,) long, (B, 2), (B,) at its places `at` in the pass's rows (ImageBatch.at)."""
        self.columns[at] = columns.cpu()
        self.origins[at] = origins.cpu()
        self.max_prob[at] = max_prob.cpu()

    def gathered(self, rows: np.ndarray, n: int, world) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n,) columns, (n, 2) origins, (n,) max probabilities of all n particles, this rank's
        `rows` from its batches and the rest from the other ranks (distributed.World)."""
        mine = torch.zeros(n, dtype=torch.bool)
        mine[rows] = True
        columns, best = torch.zeros(n, dtype=torch.long), torch.zeros(n, 3)
        if len(rows):
            columns[rows] = self.columns
            best[rows] = torch.cat([self.origins, self.max_prob[:, None]], 1)
        columns, best = world.assemble(columns, mine), world.assemble(best, mine)
        return columns, best[:, :2].contiguous(), best[:, 2].contiguous()
