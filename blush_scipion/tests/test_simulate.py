"""Simulated data sets: files, the requested SNR, and the density of an atomic model."""

import json

import pytest
import torch

from blush_scipion.engine.density import ModelError, density_from_model
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.symmetry import symmetry_operators

from .conftest import MODEL


def test_particles_star_has_no_poses_and_truth_star_has_them(noisy_set):
    plain, truth = Particles.read(noisy_set / "particles.star"), Particles.read(noisy_set / "truth.star")
    assert not plain.has_poses() and "rlnOriginXAngst" not in plain.table.columns
    assert truth.has_poses() and len(truth) == len(plain) == 2000
    assert list(plain.table["rlnImageName"]) == list(truth.table["rlnImageName"])
    assert truth.pixel_size == 2.0 and truth.image_size == 64 and plain.has_ctf()


def test_noise_has_the_requested_snr(noisy_set):
    summary = json.loads((noisy_set / "summary.json").read_text())
    images = Particles.read(noisy_set / "particles.star").read_images(range(300))
    # images = signal + noise, independent: var(image) = var(signal) (1 + 1 / SNR)
    measured = images.var(dim=(-2, -1)).mean() / summary["signal_variance"] - 1
    assert float(1 / measured) == pytest.approx(0.1, rel=0.1)


def test_density_has_its_mass_at_the_centre_and_falls_to_zero_outside():
    vol = density_from_model(MODEL, 64, 2.0, bfactor=50)
    k = torch.arange(64, dtype=torch.float32) - 32
    z, y, x = torch.meshgrid(k, k, k, indexing="ij")
    w = vol.clamp(min=0)
    centre = torch.stack([(w * c).sum() / w.sum() for c in (x, y, z)])
    assert centre.abs().max() < 1.0
    r = torch.sqrt(x**2 + y**2 + z**2)
    assert vol[r > 24].abs().max() < 0.02 * vol.max()


def test_truth_map_is_written_with_its_pixel_size(noisy_set):
    vol, apix = read_map(noisy_set / "truth.mrc")
    assert vol.shape == (64, 64, 64) and apix == 2.0


def test_a_model_too_big_for_the_box_is_refused():
    with pytest.raises(ModelError, match=r"4gcnA.*does not fit"):
        density_from_model(MODEL, 24, 1.0)


@pytest.mark.parametrize(
    "group,order", [("C1", 1), ("C4", 4), ("D3", 6), ("T", 12), ("O", 24), ("I", 60), ("I1", 60)]
)
def test_point_groups_have_their_order(group, order):
    ops = symmetry_operators(group)
    assert len(ops) == order
    assert torch.allclose(ops @ ops.transpose(-1, -2), torch.eye(3).expand(order, 3, 3), atol=1e-5)


def test_symmetric_distance_is_zero_between_symmetry_equivalent_poses():
    from blush_scipion.engine.rotation import angular_distance, euler_to_matrix, symmetric_distance

    ops = symmetry_operators("D2")
    pose = euler_to_matrix(*torch.tensor([30.0, 70.0, -20.0])).expand(4, 3, 3)
    assert symmetric_distance(pose @ ops, pose, ops).abs().max() < 1e-3
    assert angular_distance(pose @ ops, pose)[1:].min() > 179  # D2's 2-folds: 180 deg apart
    turned = euler_to_matrix(*torch.tensor([35.0, 70.0, -20.0]))[None]
    assert abs(float(symmetric_distance(turned, pose[:1], symmetry_operators("C1"))) - 5) < 0.01
