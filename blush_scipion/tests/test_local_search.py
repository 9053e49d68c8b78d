"""Local searches with oversampling and RELION's expected accuracies: the fine pass finds poses
between the coarse lattice's points, the prior holds ambiguous images near their previous pose,
and the accuracy estimate follows the noise."""

import dataclasses
import math

import torch

from blush_scipion.engine.accuracy import ANGLES, expected_accuracy
from blush_scipion.engine.density import density_from_model
from blush_scipion.engine.local_search import Cells, LocalSampling, fine_pass, local_search
from blush_scipion.engine.projector import (
    SlicePoints,
    extract_central_slices,
    fourier_reference,
    reference_channels,
)
from blush_scipion.engine.rotation import (
    angular_distance,
    euler_to_matrix,
    random_rotations,
    rotation_vector_matrix,
)

from .conftest import MODEL

N, APIX = 48, 1.5


def _reference():
    return fourier_reference(density_from_model(MODEL, N, APIX, bfactor=20.0), 2)


def _poses(count: int, seed: int) -> torch.Tensor:
    return euler_to_matrix(*random_rotations(count, torch.Generator().manual_seed(seed)).unbind(1))


def test_the_fine_pass_finds_poses_between_the_coarse_lattice_points():
    """Noise-free images 2.6 degrees from their previous pose in random directions: the fine pass
    lands on or next to the fine lattice's point nearest the truth, well inside the coarse cells (the
    coarse pass may rank a neighbouring cell first, as RELION's does)."""
    ref = _reference()
    points = SlicePoints.within(N, N // 2)
    truth = _poses(12, 0)
    axis = torch.nn.functional.normalize(
        torch.randn(12, 3, generator=torch.Generator().manual_seed(1)), dim=1
    )
    previous = rotation_vector_matrix(axis * 2.6).transpose(1, 2) @ truth
    ctf = torch.ones(12, points.index.shape[0])
    images = extract_central_slices(ref, truth, points)
    weight = points.weight.expand_as(ctf) * 1e3  # little noise: sharp posteriors
    sampling = LocalSampling.around(1.875, 1.0, 0.5)
    found = local_search(ref, images, ctf, weight, weight, previous, sampling, points)
    error = angular_distance(found.rotations, truth)
    coarse = angular_distance(sampling.rotations[None] @ previous[:, None], truth[:, None]).amin(1)
    fine = angular_distance(sampling.fine_rotations.reshape(1, -1, 3, 3) @ previous[:, None], truth[:, None])
    assert float((error <= fine.amin(1) + 0.05).float().mean()) >= 0.75, (error, fine.amin(1))
    assert (error < sampling.step).all() and float(error.mean()) < 0.6 * float(coarse.mean()), (error, coarse)
    assert float(found.shifts.abs().max()) == 0.0  # no shift: the fine lattice holds the previous origin
    assert torch.allclose(found.max_prob, found.max_prob.clamp(0, 1))
    # the M-step's slices carry each image's whole probability once
    assert torch.allclose(
        found.slice_weights.sum(0) / weight[0], torch.full((points.index.shape[0],), 12.0), rtol=1e-3
    )


def test_the_prior_keeps_an_uninformative_image_at_its_previous_pose():
    ref = _reference()
    points = SlicePoints.within(N, N // 2)
    previous = _poses(6, 2)
    ctf = torch.ones(6, points.index.shape[0])
    images = torch.zeros(6, points.index.shape[0], dtype=torch.complex64)  # no signal at all
    weight = points.weight.expand_as(ctf) * 1e-6
    found = local_search(
        ref, images, ctf, weight, weight, previous, LocalSampling.around(3.75, 1.0, 0.5), points
    )
    assert float(angular_distance(found.rotations, previous).max()) < 3.75


def test_cells_of_one_orientation_share_its_projections():
    """An image's significant cells at several shifts of one orientation are read and summed once
    (Cells.column): the same posterior, poses, residuals and M-step sums as with every cell on its
    own, from fewer slices."""
    channels = reference_channels(_reference())
    points = SlicePoints.within(N, N // 2)
    b, g = 4, torch.Generator().manual_seed(4)
    truth = _poses(b, 3)
    sampling = LocalSampling.around(3.75, 1.0, 0.5)
    t, j = sampling.fine_shifts.shape[0], sampling.rotations.shape[0]
    images = extract_central_slices(channels, truth, points)
    images = images + 0.3 * images.abs().mean() * torch.randn(images.shape, generator=g, dtype=images.dtype)
    ctf = torch.ones(b, points.index.shape[0])
    weight = points.weight.expand_as(ctf) * 1e-4  # broad posteriors: many shifts of each orientation
    column = torch.stack([torch.randperm(j, generator=g)[:3] for _ in range(b)]).repeat_interleave(t, dim=1)
    probability = torch.rand(column.shape, generator=g) * (torch.rand(column.shape, generator=g) > 0.4)
    probability[:, 0] = 1.0
    cells = Cells(
        probability,
        torch.arange(t).repeat(b, 3),
        sampling.fine_rotations[column] @ truth[:, None, None],
        sampling.fine_log_prior[column],
        column=column,
    )
    shared, alone = (
        fine_pass([channels], images, ctf, weight, weight, c, sampling.fine_shifts, points)
        for c in (cells, dataclasses.replace(cells, column=None))
    )
    for name in ("rotations", "shifts", "max_prob", "residual", "mass", "shift_posterior"):
        assert torch.allclose(getattr(shared, name), getattr(alone, name), atol=1e-5), name
    assert len(shared.slices) < len(alone.slices)
    for found in (shared, alone):  # each slice's weight moments, by its rotation
        found.moments = (found.slice_weights.sum(1)[:, None, None] * found.slice_rotations).sum(0)
    assert torch.allclose(shared.slices.sum(0), alone.slices.sum(0), rtol=1e-4, atol=1e-3)
    assert torch.allclose(shared.slice_weights.sum(0), alone.slice_weights.sum(0), rtol=1e-5)
    assert torch.allclose(shared.moments, alone.moments, rtol=1e-5)


def test_expected_accuracy_follows_the_noise():
    """Less noise, finer accuracy; a reference with no signal is 'worse than the ladder'."""
    ref = _reference()
    points = SlicePoints.within(N, 12)
    poses = _poses(40, 3)
    ctf = torch.ones(40, points.index.shape[0])
    weight = points.weight.expand_as(ctf)
    accuracies = [
        expected_accuracy(ref, poses, ctf, weight * scale, points, torch.Generator().manual_seed(0))
        for scale in (1e-4, 1e-3, 1e-2)
    ]  # the map is not on an image's grey scale
    rotation, translation = zip(*accuracies)
    assert rotation[0] > rotation[1] > rotation[2] and translation[0] > translation[1] >= translation[2]
    # the log-likelihood difference grows as the square of a small change: 100x the weight, about
    # a tenth of the error (up to the ladder's steps)
    assert 0.05 < rotation[2] / rotation[0] < 0.2, rotation
    empty = expected_accuracy(torch.zeros_like(ref), poses, ctf, weight, points, torch.Generator())
    assert empty == (float(ANGLES[-1]), 12.0)
    assert math.isfinite(rotation[2]) and rotation[2] > 0
