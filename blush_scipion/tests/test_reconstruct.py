"""Reconstruction from known poses, measured against the simulation's truth (and RELION)."""

import subprocess

import pytest
import torch

from blush_scipion.engine.fsc import fourier_shell_correlation
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.reconstruct import reconstruct_particles

from .conftest import requires_relion


def test_noise_free_reconstruction_matches_truth_to_90_percent_of_nyquist(clean_set):
    rec = reconstruct_particles(Particles.read(clean_set / "truth.star"))
    truth, _ = read_map(clean_set / "truth.mrc")
    fsc = fourier_shell_correlation(rec.volume, truth)
    n = truth.shape[-1]
    shells = torch.arange(len(fsc))
    assert (fsc[shells <= 0.9 * n / 2] > 0.5).all(), fsc


def test_half_map_fsc_predicts_fsc_against_truth(noisy_set):
    # Rosenthal & Henderson: the full map's FSC to the truth is sqrt(2 F / (1 + F)) of the halves' F
    rec = reconstruct_particles(Particles.read(noisy_set / "truth.star"))
    truth, _ = read_map(noisy_set / "truth.mrc")
    half = rec.fsc.clamp(min=0)
    predicted = torch.sqrt(2 * half / (1 + half))
    measured = fourier_shell_correlation(rec.volume, truth)
    assert half[len(half) // 2] < 0.9  # the test means something only if noise is visible
    assert (measured[1:] - predicted[1:]).abs().max() < 0.1, (measured, predicted)


def test_symmetry_expansion_reconstructs_a_symmetric_map(clean_set):
    # C2 applied to an asymmetric particle: the map becomes the C2 average of the truth
    rec = reconstruct_particles(Particles.read(clean_set / "truth.star"), symmetry="C2")
    truth, _ = read_map(clean_set / "truth.mrc")
    c2 = 0.5 * (truth + torch.rot90(truth, 2, dims=(1, 2)).roll(shifts=(1, 1), dims=(1, 2)))
    fsc = fourier_shell_correlation(rec.volume, c2)
    assert (fsc[1:25] > 0.9).all(), fsc


@requires_relion
def test_relion_reconstruct_agrees_with_truth_and_with_us(clean_set, tmp_path):
    out = tmp_path / "relion.mrc"
    subprocess.run(
        ["relion_reconstruct", "--i", "truth.star", "--o", str(out), "--ctf"],
        check=True,
        capture_output=True,
        cwd=clean_set,
    )
    relion, apix = read_map(out)
    truth, _ = read_map(clean_set / "truth.mrc")
    ours = reconstruct_particles(Particles.read(clean_set / "truth.star")).volume
    n = truth.shape[-1]
    keep = torch.arange(n // 2 + 1) <= 0.9 * n / 2
    assert apix == 2.0
    assert (fourier_shell_correlation(relion, truth)[keep] > 0.5).all()
    assert (fourier_shell_correlation(relion, ours)[keep] > 0.9).all()


@requires_relion
@pytest.mark.parametrize("group", ["D2", "T", "O", "I"])
def test_symmetry_conventions_match_relion(clean_set, tmp_path, group):
    subset = Particles.read(clean_set / "truth.star").subset(range(300))
    subset.root = clean_set
    star = tmp_path / "subset.star"
    subset.write(star)
    (tmp_path / "particles.mrcs").symlink_to(clean_set / "particles.mrcs")
    subprocess.run(
        ["relion_reconstruct", "--i", "subset.star", "--o", "relion.mrc", "--ctf", "--sym", group],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    relion, _ = read_map(tmp_path / "relion.mrc")
    ours = reconstruct_particles(Particles.read(star), symmetry=group).volume
    assert (fourier_shell_correlation(relion, ours)[1:25] > 0.95).all()
