"""The noise model keeps one spectrum per optics group (RELION 3.1): two groups of the same
particles at noise levels ten-fold apart get spectra ten-fold apart, in refine3d and class2d."""

import subprocess
import sys

import numpy as np
import pytest
import starfile

from blush_scipion.engine.fourier import low_pass
from blush_scipion.engine.mrc import read_map, write_map
from blush_scipion.engine.particles import Particles, concatenate
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

from .conftest import MODEL


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory):
    """4gcnA, 40 px at 3 A/px: 200 particles at SNR 0.5 (group 1) and 200 at SNR 0.05 (group 2)."""
    out = tmp_path_factory.mktemp("groups")
    sets = []
    for i, snr in enumerate((0.5, 0.05)):
        simulate_from_model(
            MODEL,
            SimulationSettings(n_particles=200, box=40, pixel_size=3.0, snr=snr, seed=30 + i),
            out / f"g{i}",
        )
        sets.append(Particles.read(out / f"g{i}" / "particles.star"))
    concatenate(sets).write(out / "mixed.star")
    truth, _ = read_map(out / "g0" / "truth.mrc")
    write_map(out / "ref.mrc", low_pass(truth, 30.0, 3.0), 3.0)
    return out


def noise_ratio(model_star) -> float:
    blocks = starfile.read(model_star, always_dict=True)
    low, high = (blocks[f"model_optics_group_{g}"]["rlnSigma2Noise"].to_numpy() for g in (1, 2))
    return float(np.median(high[3:12] / low[3:12]))


@pytest.mark.parametrize(
    "command", [["refine3d", "--ref", "ref.mrc", "--max-iter", "2"], ["class2d", "--k", "2", "--iter", "2"]]
)
def test_each_optics_group_gets_its_own_noise_spectrum(two_groups, command):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "blush_scipion.engine.cli",
            command[0],
            "--particles",
            "mixed.star",
            "--out",
            command[0],
            "--diameter",
            "75",
            *command[1:],
        ],
        cwd=two_groups,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ratio = noise_ratio(two_groups / command[0] / "run_model.star")
    assert 7 < ratio < 13, ratio  # the simulated noise variances are 10x apart


def test_optics_groups_survive_the_scipion_round_trip(two_groups, tmp_path):
    from pwem.objects import SetOfParticles

    from blush_scipion.convert import particles_to_star, star_to_particles

    scipion_set = SetOfParticles(filename=str(tmp_path / "particles.sqlite"))
    star_to_particles(str(two_groups / "mixed.star"), scipion_set)
    scipion_set.write()
    particles_to_star(scipion_set, str(tmp_path / "back.star"))
    back, original = Particles.read(tmp_path / "back.star"), Particles.read(two_groups / "mixed.star")
    assert list(back.optics["rlnOpticsGroup"]) == [1, 2]
    assert (back.table["rlnOpticsGroup"].to_numpy() == original.table["rlnOpticsGroup"].to_numpy()).all()
