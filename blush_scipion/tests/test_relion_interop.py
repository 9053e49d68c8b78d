"""RELION and us on each other's files: we read what relion_refine writes (run_data.star and
run_model.star into blush reconstruct, blush fsc and the Scipion conversion), and
relion_reconstruct on our refine3d's run_data.star gives our map."""

import json
import shutil
import subprocess

import pytest
import torch

from blush_scipion.engine.fsc import fourier_shell_correlation
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.star import read_star

from . import command_line
from .conftest import simulate_with_start
from .test_relion_hook import TWO_ITERATIONS, refine_args

pytestmark = pytest.mark.skipif(
    shutil.which("relion_refine") is None or shutil.which("relion_reconstruct") is None,
    reason=(
        "relion_refine / relion_reconstruct not on PATH: `apt-get install relion` (Debian's 3.1.3) "
        "enables them"
    ),
)

BOX, APIX = 32, 3.0


def blush(*args, cwd=None):
    r = command_line.blush(*args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 particles of 4gcnA, 32 px at 3 A, SNR 1, and a 20 A start from the truth."""
    return simulate_with_start(tmp_path_factory, "interop", 300, seed=8, box=BOX, pixel_size=APIX)


def low_shells(fsc: torch.Tensor, resolution: float) -> torch.Tensor:
    """The FSC's shells 1 .. the one at `resolution` A."""
    return fsc[1 : int(BOX * APIX / resolution) + 1]


def test_we_read_what_relion_refine_writes(data, tmp_path):
    (data / "relion").mkdir()
    subprocess.run(
        ["relion_refine", *refine_args("particles.star", "relion/run", *TWO_ITERATIONS)],
        cwd=data,
        check=True,
        capture_output=True,
        text=True,
    )
    run_data = data / "relion" / "run_it002_data.star"
    particles = Particles.read(run_data)
    assert len(particles) == 300 and particles.has_poses() and particles.has_ctf()
    model = read_star(data / "relion" / "run_it002_model.star")
    assert {"model_general", "model_classes", "model_class_1"} <= set(model)
    # our reconstruction from RELION's poses looks like the truth, and like RELION's own map
    blush("reconstruct", "--particles", run_data, "--out", tmp_path / "ours.mrc")
    ours, apix = read_map(tmp_path / "ours.mrc")
    truth, _ = read_map(data / "truth.mrc")
    assert apix == APIX
    assert (
        low_shells(fourier_shell_correlation(ours, truth), 16.0) > 0.5
    ).all()  # 2 coarse RELION iterations
    blush(
        "fsc",
        tmp_path / "ours.mrc",
        data / "relion" / "run_it002_class001.mrc",
        "--json",
        tmp_path / "fsc.json",
    )
    record = json.loads((tmp_path / "fsc.json").read_text())
    assert record["resolution_05"] < 20.0, record["resolution_05"]  # RELION's map holds only its current size
    # and Scipion's sets take them, poses included
    from pwem.objects import SetOfParticles

    from blush_scipion.convert import star_to_particles

    scipion_set = SetOfParticles(filename=str(tmp_path / "particles.sqlite"))
    star_to_particles(str(run_data), scipion_set)
    assert scipion_set.getSize() == 300 and scipion_set.hasAlignmentProj()


def test_relion_reconstruct_gives_our_map_from_our_poses(data, tmp_path):
    out = tmp_path / "refine"
    blush(
        "refine3d",
        "--particles",
        data / "particles.star",
        "--ref",
        data / "ref.mrc",
        "--out",
        out,
        "--max-iter",
        3,
        "--diameter",
        80,
    )
    subprocess.run(
        ["relion_reconstruct", "--i", "run_data.star", "--o", "relion.mrc", "--ctf"],
        cwd=out,
        check=True,
        capture_output=True,
        text=True,
    )
    relion, apix = read_map(out / "relion.mrc")
    ours, _ = read_map(out / "run_class001.mrc")
    assert apix == APIX
    assert (low_shells(fourier_shell_correlation(ours, relion), 10.0) > 0.9).all()
