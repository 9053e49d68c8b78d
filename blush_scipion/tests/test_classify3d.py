"""3D classification: two structures separate from one consensus map, each class map resembles its
own structure, a continued run ends where a straight one does, Blush's references are written."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from blush_scipion.engine.classify3d import class_ssnr, reference_power
from blush_scipion.engine.fit import fit_rigid, transform_map
from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.particles import Particles, concatenate
from blush_scipion.engine.rotation import angular_distance
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

from .conftest import DATA

N_EACH = 150
ARGS = ("--k", 2, "--diameter", 80, "--seed", 2)
ITERATIONS = 6


def blush(*args):
    return subprocess.run(
        [sys.executable, "-m", "blush_scipion.engine.cli", *map(str, args)], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    """150 particles each of 4gcnA (14 kDa) and adenylate kinase (23.5 kDa), 40 px at 3 A/px, SNR
    0.1, without poses; the consensus map of all 300 at their true poses as the reference (what a
    3D classification starts from after a consensus refinement)."""
    out = tmp_path_factory.mktemp("mix3d")
    for i, name in enumerate(["4gcnA", "adk_closed"]):
        simulate_from_model(
            DATA / f"{name}.pdb.gz",
            SimulationSettings(n_particles=N_EACH, box=40, pixel_size=3.0, snr=0.1, seed=20 + i),
            out / name,
        )
    concatenate([Particles.read(out / n / "particles.star") for n in ("4gcnA", "adk_closed")]).write(
        out / "mixed.star"
    )
    concatenate([Particles.read(out / n / "truth.star") for n in ("4gcnA", "adk_closed")]).write(
        out / "truth.star"
    )
    r = blush("reconstruct", "--particles", out / "truth.star", "--out", out / "consensus.mrc")
    assert r.returncode == 0, r.stderr
    return out


def accuracy(labels: np.ndarray, classes: np.ndarray) -> float:
    """The fraction right under the best matching of two classes to two labels."""
    right = float(np.mean(labels == classes))
    return max(right, 1 - right)


def docked_resolution(volume: torch.Tensor, truth: torch.Tensor) -> float:
    """FSC 0.5 resolution (A) of a 40 px, 3 A/px map against a truth, after a rigid fit onto it."""
    rotation, shift, _ = fit_rigid(volume, truth, 3.0)
    return resolution_at(
        fourier_shell_correlation(transform_map(volume, rotation, shift), truth), 0.5, 40, 3.0
    )


def class3d(mixture, out, *args):
    """class3d on the two-structure mixture from its consensus map, with the tests' common ARGS."""
    return blush(
        "class3d",
        "--particles",
        mixture / "mixed.star",
        "--ref",
        mixture / "consensus.mrc",
        "--out",
        out,
        *args,
        *ARGS,
    )


@pytest.fixture(scope="module")
def straight(mixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("c3d") / "straight"
    r = class3d(mixture, out, "--iter", ITERATIONS)
    assert r.returncode == 0, r.stderr
    return out


def test_two_structures_separate_and_each_map_is_its_own(mixture, straight):
    table = Particles.read(straight / "run_data.star").table
    labels = np.repeat([0, 1], N_EACH)
    assert accuracy(labels, table["rlnClassNumber"].to_numpy() - 1) > 0.95
    assert {
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnOriginXAngst",
        "rlnMaxValueProbDistribution",
    } <= set(table.columns)
    maps = [read_map(straight / f"run_class{c:03d}.mrc")[0] for c in (1, 2)]
    truths = [read_map(mixture / n / "truth.mrc")[0] for n in ("4gcnA", "adk_closed")]
    # the class holding most of a structure's particles: its map is nearer that structure than the other
    major = [int(np.bincount(table["rlnClassNumber"].to_numpy()[labels == s]).argmax()) - 1 for s in (0, 1)]
    assert sorted(major) == [0, 1]
    for s, c in enumerate(major):  # docked first: the classes' frames drift from the consensus at 60 A
        own, other = (docked_resolution(maps[c], truths[t]) for t in (s, 1 - s))
        assert own < 27 and own < other - 3, (own, other)
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["classes"] == 2 and summary["iterations"] == ITERATIONS and not summary["blush"]
    assert abs(sum(summary["class_distribution"]) - 1) < 1e-4 and min(summary["class_distribution"]) > 0.4
    assert len(summary["history"]) == ITERATIONS and summary["history"][0]["class_changes"] == 1.0
    model = (straight / "run_model.star").read_text()
    assert "run_class001.mrc" in model and "run_it006_" not in model
    assert (straight / "run_it006_class002.mrc").exists() and (straight / "run_it006_optimiser.json").exists()


def test_oversampling_finds_poses_finer_than_the_grid(tmp_path):
    """RELION's --oversampling 1: each image's significant poses of the 15 deg grid scored again at
    7.5 deg (and 1 px) come closer to the true poses than the grid alone. One class of clear
    particles (SNR 1) from their structure at 20 A, so that the grid's step, not the data, limits."""
    simulate_from_model(
        DATA / "adk_closed.pdb.gz",
        SimulationSettings(n_particles=200, box=40, pixel_size=3.0, snr=1.0, seed=3),
        tmp_path / "sim",
    )
    truth = Particles.read(tmp_path / "sim" / "truth.star").rotations()
    error = {}
    for oversampling in (0, 1):
        out = tmp_path / f"oversampling{oversampling}"
        r = blush(
            "class3d",
            *("--particles", tmp_path / "sim" / "particles.star", "--ref", tmp_path / "sim" / "truth.mrc"),
            *("--out", out, "--k", 1, "--iter", 3, "--ini-high", 20, "--diameter", 80),
            *("--oversampling", oversampling),
        )
        assert r.returncode == 0, r.stderr
        found = Particles.read(out / "run_data.star").rotations()
        error[oversampling] = float(angular_distance(found, truth).median())
    # measured: 10.1 deg on the grid, 4.9 deg oversampled
    assert error[1] < 0.7 * error[0] and error[1] < 7, error


def test_a_continued_run_ends_where_a_straight_one_does(mixture, straight, tmp_path):
    out = tmp_path / "continued"
    assert class3d(mixture, out, "--iter", 3).returncode == 0
    r = class3d(mixture, out, "--iter", ITERATIONS, "--continue")
    assert r.returncode == 0, r.stderr
    assert "continuing after iteration 3" in r.stdout
    for c in (1, 2):
        a, b = (read_map(folder / f"run_class{c:03d}.mrc")[0] for folder in (straight, out))
        assert (fourier_shell_correlation(a, b)[1:15] > 0.99).all()
    classes = [
        Particles.read(folder / "run_data.star").table["rlnClassNumber"].to_numpy()
        for folder in (straight, out)
    ]
    assert np.mean(classes[0] == classes[1]) > 0.99


def test_blush_writes_its_references_and_still_separates(mixture, tmp_path):
    out = tmp_path / "blush"
    r = class3d(mixture, out, "--iter", ITERATIONS, "--blush")
    assert r.returncode == 0, r.stderr
    classes = Particles.read(out / "run_data.star").table["rlnClassNumber"].to_numpy()
    assert accuracy(np.repeat([0, 1], N_EACH), classes - 1) > 0.95
    for c in (1, 2):
        regularised, denoised = (read_map(out / f"run_class{c:03d}{s}.mrc")[0] for s in ("", "_blush"))
        # the denoised map is the same structure, not the same map
        fsc = fourier_shell_correlation(regularised, denoised)
        assert fsc[1:5].min() > 0.8 and fsc[5:].min() < 0.99
    assert json.loads((out / "summary.json").read_text())["blush"]


def test_blush_starts_once_a_class_reaches_its_resolution(mixture, straight, tmp_path):
    out = tmp_path / "late"
    r = class3d(mixture, out, "--iter", ITERATIONS, "--blush", "--blush-from-resolution", 30)
    assert r.returncode == 0, r.stderr
    history = json.loads((out / "summary.json").read_text())["history"]
    best = np.minimum.accumulate([min(h["class_resolution_angstrom"]) for h in history])
    active = [h["blush"] for h in history]
    # an iteration's references are denoised once an earlier iteration's best class reached 30 A
    assert active == [False] + [bool(b <= 30) for b in best[:-1]]
    assert True in active, best
    first = active.index(True) + 1
    for it in range(1, first):  # before Blush starts, the run is the standard one
        assert not (out / f"run_it{it:03d}_class001_blush.mrc").exists()
        for c in (1, 2):
            a, b = (read_map(folder / f"run_it{it:03d}_class{c:03d}.mrc")[0] for folder in (straight, out))
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max())), it
    assert (out / f"run_it{first:03d}_class001_blush.mrc").exists()
    assert (out / "run_class002_blush.mrc").exists()
    assert [
        line.endswith("Blush") for line in r.stdout.splitlines() if line.startswith("iteration")
    ] == active


def test_tau2_regularisation_is_relions_ssnr():
    """data_vs_prior = T tau2 pad^3 mean weight; a map's tau2 is its transform's power as projected."""
    volume = torch.zeros(16, 16, 16)
    volume[6:10, 6:10, 6:10] = 1
    tau2 = reference_power(volume, "cpu")
    assert tau2.shape == (9,) and tau2[0] > tau2[4] > 0
    assert torch.allclose(tau2 * 0, reference_power(torch.zeros(16, 16, 16), "cpu"))
    assert torch.allclose(class_ssnr(tau2, torch.ones(9), 4.0), 32 * tau2)
