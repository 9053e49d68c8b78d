"""2D classification: the in-plane projector, angles against the truth, classes that separate."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from blush_scipion.engine.density import density_from_model
from blush_scipion.engine.fourier import centred_radius_2d, irfft2_centered, shell_sum
from blush_scipion.engine.inplane import extract_rotated, fourier_images, insert_rotated
from blush_scipion.engine.mrc import read_stack, write_stack
from blush_scipion.engine.particles import Particles, concatenate
from blush_scipion.engine.projector import SlicePoints, fourier_reference
from blush_scipion.engine.simulate import (
    SimulationSettings,
    draw_particles,
    optics_table,
    project_particles,
    simulate_from_model,
)

from .conftest import DATA


def blush(*args):
    return subprocess.run(
        [sys.executable, "-m", "blush_scipion.engine.cli", *map(str, args)], capture_output=True, text=True
    )


def test_rotation_matches_rot90_and_insert_is_the_adjoint():
    n = 32
    img = torch.zeros(n, n)
    img[10:14, 8:20], img[14:22, 16:18] = 1, 1
    img = torch.nn.functional.avg_pool2d(img[None, None], 3, 1, 1)[0, 0]
    points = SlicePoints.within(n)
    out = extract_rotated(fourier_images(img[None]), torch.tensor([0.0, 90.0]), points)
    same, turned = (irfft2_centered(points.scatter(o), n) for o in out[0])
    assert (same - img).abs().max() < 0.1
    # psi = 90: x -> y; on the centred grid (centre at n//2) that is rot90 shifted by one row
    expected = torch.roll(torch.rot90(img, 1, dims=(0, 1)), 1, dims=0)
    assert (turned - expected).abs().max() < 0.1
    g = torch.Generator().manual_seed(0)
    psi = torch.tensor([10.0, 47.0, 200.0])
    slices = torch.randn(2, 3, len(points.index), dtype=torch.complex64, generator=g)
    data, weight = torch.zeros(2, 2 * n, 2 * n, dtype=torch.complex64), torch.zeros(2, 2 * n, 2 * n)
    insert_rotated(data, weight, slices, slices.abs(), psi, points)
    grid = torch.randn(2, 2 * n, 2 * n, dtype=torch.complex64, generator=g)
    lhs = (extract_rotated(grid, psi, points).conj() * slices).sum()
    assert torch.allclose(lhs, (grid.conj() * data).sum(), rtol=1e-4)


@pytest.fixture(scope="module")
def one_view(tmp_path_factory):
    """300 images of one view of 4gcnA (40 px, 3 A/px) at random in-plane angles and shifts, with
    CTF and noise at SNR 0.3 (the whole box): a single class whose angles are known."""
    out = tmp_path_factory.mktemp("oneview")
    s = SimulationSettings(n_particles=300, box=40, pixel_size=3.0, snr=0.3, seed=4)
    table = draw_particles(s, torch.Generator().manual_seed(4))
    table["rlnAngleRot"], table["rlnAngleTilt"] = 0.0, 0.0
    truth = Particles(table, optics_table(s), out)
    volume = density_from_model(DATA / "4gcnA.pdb.gz", 40, 3.0)
    clean = project_particles(
        fourier_reference(volume), truth.rotations(), truth.origins(), truth.ctf(), 40, 3.0
    )
    noise = clean.var(dim=(-2, -1)).mean().div(s.snr).sqrt()
    write_stack(
        out / "particles.mrcs",
        clean + noise * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5)),
        3.0,
    )
    truth.write(out / "truth.star")
    Particles(
        table.drop(
            columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
        ),
        truth.optics,
        out,
    ).write(out / "particles.star")
    return out


def test_one_class_recovers_the_in_plane_angles(one_view, tmp_path):
    r = blush(
        "class2d",
        "--particles",
        one_view / "particles.star",
        "--k",
        1,
        "--out",
        tmp_path / "c",
        "--iter",
        8,
        "--diameter",
        60,
    )
    assert r.returncode == 0, r.stderr
    found = Particles.read(tmp_path / "c" / "run_data.star").table
    true_psi = Particles.read(one_view / "truth.star").table["rlnAnglePsi"].to_numpy()
    # the class average sits at some angle psi0 of the truth's view: psi_true - psi_found = psi0 for all
    difference = np.deg2rad(true_psi - found["rlnAnglePsi"].to_numpy())
    resultant = np.abs(np.exp(1j * difference).mean())
    assert resultant > 0.95, f"in-plane angles scattered (mean resultant length {resultant:.3f})"
    assert (found["rlnClassNumber"] == 1).all()


@pytest.fixture(scope="module")
def two_structures(tmp_path_factory):
    """150 particles each of 4gcnA (14 kDa) and adenylate kinase (23.5 kDa), 40 px at 3 A/px, SNR 0.3."""
    out = tmp_path_factory.mktemp("mix")
    sets = []
    for i, name in enumerate(["4gcnA", "adk_closed"]):
        simulate_from_model(
            DATA / f"{name}.pdb.gz",
            SimulationSettings(n_particles=150, box=40, pixel_size=3.0, snr=0.3, seed=10 + i),
            out / name,
        )
        sets.append(Particles.read(out / name / "particles.star"))
    concatenate(sets).write(out / "mixed.star")
    return out, np.repeat([0, 1], 150)


def test_classes_separate_two_structures(two_structures, tmp_path):
    data, labels = two_structures
    out = tmp_path / "c"
    args = ("class2d", "--particles", data / "mixed.star", "--k", 4, "--out", out, "--iter", 10)
    args += ("--diameter", 75, "--seed", 1)
    r = blush(*args)
    assert r.returncode == 0, r.stderr
    classes = Particles.read(out / "run_data.star").table["rlnClassNumber"].to_numpy()
    purity = sum(np.bincount(labels[classes == c]).max() for c in np.unique(classes)) / len(classes)
    assert purity > 0.9, f"class purity {purity:.2f}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == 4 and summary["iterations"] == 10 and not summary["blush"]
    assert abs(sum(summary["class_distribution"]) - 1) < 1e-4
    assert read_stack(out / "run_classes.mrcs").shape == (4, 40, 40)
    assert (out / "run_it010_optimiser.json").exists() and (out / "run_model.star").exists()
    again = blush(*args, "--continue")
    assert again.returncode == 0 and "continuing after iteration 10" in again.stdout


def test_bad_input_is_named(two_structures, tmp_path):
    data, _ = two_structures
    r = blush("class2d", "--particles", data / "mixed.star", "--k", 100000, "--out", tmp_path / "c")
    assert r.returncode == 2 and "mixed.star" in r.stderr and "100000 classes" in r.stderr
    r = blush("class2d", "--particles", data / "mixed.star", "--k", 0, "--out", tmp_path / "c")
    assert r.returncode == 2 and "--k" in r.stderr and ">= 1" in r.stderr
    no_ctf = Particles.read(data / "mixed.star")
    no_ctf.with_columns().table.drop(columns=["rlnDefocusU"]).pipe(
        lambda t: Particles(t, no_ctf.optics, no_ctf.root).write(tmp_path / "no_ctf.star")
    )
    r = blush("class2d", "--particles", tmp_path / "no_ctf.star", "--k", 2, "--out", tmp_path / "d")
    assert r.returncode == 2 and "no_ctf.star" in r.stderr and "CTF" in r.stderr


def test_shipped_2d_denoiser_brings_a_held_out_class_average_closer_to_the_truth():
    """4gcnA (never trained on): its projection at 2 A/px, one of a simulated pair of noisy class
    averages at 10 A; the denoised image is closer to the truth in every shell up to 12 A."""
    from blush_scipion.engine.blush.denoiser import denoise_images, load_denoiser
    from blush_scipion.engine.blush.halfmaps import simulate_half_maps
    from blush_scipion.engine.blush.training import projection
    from blush_scipion.engine.fsc import fourier_shell_correlation as frc
    from blush_scipion.engine.rotation import euler_to_matrix

    volume = density_from_model(DATA / "4gcnA.pdb.gz", 64, 2.0)
    truth = projection(volume, euler_to_matrix(*torch.tensor([30.0, 60.0, 10.0])))
    noisy, _ = simulate_half_maps(truth, 2.0, 10.0, torch.Generator().manual_seed(1), blur_bfactor=50.0)
    denoised, _ = denoise_images(noisy[None], 2.0, load_denoiser(dim=2), 80.0)
    before, after = frc(noisy, truth), frc(denoised[0], truth)
    shells = slice(2, int(64 * 2.0 / 12.0) + 1)
    assert (after[shells] > before[shells]).all(), (before[shells], after[shells])


def test_blush_classes_separate_two_structures_and_continue(two_structures, tmp_path):
    """With --blush: the classes still separate; Blush's references are written beside the
    regularised averages, and a continued run picks them up."""
    data, labels = two_structures
    out = tmp_path / "b"
    args = (
        "class2d",
        "--particles",
        data / "mixed.star",
        "--k",
        4,
        "--out",
        out,
        "--diameter",
        75,
        "--seed",
        1,
        "--blush",
    )
    r = blush(*args, "--iter", 4)
    assert r.returncode == 0, r.stderr
    again = blush(*args, "--iter", 8, "--continue")
    assert again.returncode == 0 and "continuing after iteration 4" in again.stdout, again.stderr
    classes = Particles.read(out / "run_data.star").table["rlnClassNumber"].to_numpy()
    purity = sum(np.bincount(labels[classes == c]).max() for c in np.unique(classes)) / len(classes)
    assert purity > 0.9, f"class purity {purity:.2f}"
    averages, references = read_stack(out / "run_classes.mrcs"), read_stack(out / "run_classes_blush.mrcs")
    assert averages.shape == references.shape == (4, 40, 40)
    assert not torch.allclose(averages, references)
    assert json.loads((out / "summary.json").read_text())["blush"]


def test_mini_batches_separate_two_structures_and_an_interrupted_run_continues_the_same(
    two_structures, tmp_path
):
    """--grad: batches of 50 growing to 100 of the 300 particles, then one pass over all of them;
    the classes separate. A run killed part-way and continued ends with the same classes as one
    left alone (the batches and the running sums are restored exactly)."""
    import time

    data, labels = two_structures
    args = [
        "class2d",
        "--particles",
        data / "mixed.star",
        "--k",
        4,
        "--diameter",
        75,
        "--seed",
        1,
        "--grad",
        "--iter",
        20,
        "--grad-ini-subset",
        50,
        "--grad-fin-subset",
        100,
    ]
    r = blush(*args, "--out", tmp_path / "whole")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    sizes = [h["particles"] for h in summary["history"]]
    assert sizes[:6] == [50] * 6 and sizes[-4:-1] == [100] * 3 and sizes[-1] == 300  # 30% first, 20% last
    classes = Particles.read(tmp_path / "whole" / "run_data.star").table["rlnClassNumber"].to_numpy()
    purity = sum(np.bincount(labels[classes == c]).max() for c in np.unique(classes)) / len(classes)
    assert purity > 0.9, f"class purity {purity:.2f}"
    assert len(list((tmp_path / "whole").glob("run_it*_grad_sums.safetensors"))) == 1
    assert sorted(p.name[:9] for p in (tmp_path / "whole").glob("run_it*_optimiser.json")) == [
        "run_it010",
        "run_it020",
    ]

    out = tmp_path / "killed"
    run = subprocess.Popen(
        [sys.executable, "-m", "blush_scipion.engine.cli", *map(str, args), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not (out / "run_it010_optimiser.json").exists() and run.poll() is None:
        time.sleep(0.05)
    run.kill()
    run.wait()
    again = blush(*args, "--out", out, "--continue")
    assert again.returncode == 0 and "continuing after iteration" in again.stdout, again.stderr
    assert "continuing after iteration 20" not in again.stdout  # it was interrupted
    resumed = Particles.read(out / "run_data.star").table["rlnClassNumber"].to_numpy()
    assert (resumed == classes).all()
    assert torch.allclose(
        read_stack(out / "run_classes.mrcs"), read_stack(tmp_path / "whole" / "run_classes.mrcs"), atol=1e-5
    )


def test_an_inactive_class_takes_half_of_the_largest_and_differs_from_it():
    from blush_scipion.engine.classify2d import Sums
    from blush_scipion.engine.minibatch import running_weights

    g = torch.Generator().manual_seed(0)
    weight = torch.rand(3, 8, 8, generator=g) + 1
    data = torch.randn(3, 8, 8, dtype=torch.complex64, generator=g) * 10
    sums = Sums(data, weight, torch.tensor([60.0, 39.5, 0.5]), 4.0, torch.ones(1, 5), torch.ones(1, 5))
    out, inactive = sums.reseeded(0.1, torch.Generator().manual_seed(1))
    assert inactive == [2] and torch.equal(sums.mass, torch.tensor([60.0, 39.5, 0.5]))  # the input is kept
    assert torch.allclose(out.mass, torch.tensor([30.0, 39.5, 30.0]))
    assert torch.allclose(out.weight[2], 0.5 * weight[0]) and torch.allclose(out.weight[0], 0.5 * weight[0])
    added = out.data[2] - out.data[0]  # noise of the data's own size
    assert 0.5 < float((added.abs() ** 2).mean() / out.weight[0].mean()) < 2
    # a sum over m particles has signal and noise weights m; a running sum holds fewer particles' noise
    assert running_weights(1000.0, 1000.0, 1.0, 1000, 1000) == [1000.0, 1000.0]
    signal, noise = 1000.0, 1000.0
    for _ in range(50):
        signal, noise = running_weights(signal, noise, 0.5, 1000, 100)
    assert abs(signal**2 / noise - 100 * (2 - 0.5) / 0.5) < 1


def roundness(images: torch.Tensor) -> torch.Tensor:
    """(K, n, n) -> (K,): the share of each image's power that its rotational average holds (1 for
    a round image)."""
    n = images.shape[-1]
    shells = torch.round(centred_radius_2d(n)).long()
    n_shells = int(shells.max()) + 1
    profile = shell_sum(images, shells, n_shells) / shell_sum(torch.ones(n, n), shells, n_shells)
    return (profile[:, shells] ** 2).sum((1, 2)) / (images**2).sum((1, 2))


def test_the_first_classes_are_not_round(two_structures, tmp_path):
    """RELION 4's start: random blobs, not the random subsets' averages. Averages of images at random
    angles are round, fit every image alike at every angle, and the first classes stay round."""
    data, _ = two_structures
    shares = {}
    for name, extra in (("blobs", ()), ("averages", ("--no-init-blobs",))):
        out = tmp_path / name
        args = ("class2d", "--particles", data / "mixed.star", "--k", 4, "--out", out, "--iter", 1)
        r = blush(*args, "--diameter", 75, "--seed", 1, *extra)
        assert r.returncode == 0, r.stderr
        shares[name] = 1 - roundness(read_stack(out / "run_it001_classes.mrcs"))
    # measured: 0.05-0.13 of the power off the rotational average from blobs, 0.02-0.05 from averages
    assert shares["averages"].max() < 0.06, shares
    assert shares["blobs"].mean() > 2 * shares["averages"].mean(), shares
