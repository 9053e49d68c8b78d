"""Shared fixtures: a private Scipion set-up, and simulated data sets (built once per session)."""

import shutil
from pathlib import Path

import pytest
import torch

from blush_scipion.headless import configure_scipion

REPO = Path(__file__).resolve().parents[2]
configure_scipion(REPO / ".scipion")

DATA = Path(__file__).resolve().parents[1] / "data"
MODEL = DATA / "4gcnA.pdb.gz"  # 14 kDa, shipped with the package

requires_relion = pytest.mark.skipif(
    shutil.which("relion_reconstruct") is None,
    reason="RELION not on PATH: `apt-get install relion` (Debian's 3.1.3) enables the interop tests",
)


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request) -> torch.device:
    """The fast numeric tests run on every device present: the CPU, and a GPU where there is one."""
    return torch.device(request.param)


def _simulate(tmp_path_factory, name, **settings):
    from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

    out = tmp_path_factory.mktemp(name)
    simulate_from_model(MODEL, SimulationSettings(**settings), out)
    return out


def simulate_with_start(tmp_path_factory, name, n_particles, seed, box=32, pixel_size=3.0):
    """`n_particles` at SNR 1 with their true poses, and ref.mrc: their truth low-passed to 20 A (the
    start of the RELION runs)."""
    from blush_scipion.engine.fourier import low_pass
    from blush_scipion.engine.mrc import read_map, write_map

    out = _simulate(
        tmp_path_factory, name, n_particles=n_particles, box=box, pixel_size=pixel_size, snr=1.0, seed=seed
    )
    truth, _ = read_map(out / "truth.mrc")
    write_map(out / "ref.mrc", low_pass(truth, 20.0, pixel_size), pixel_size)
    return out


@pytest.fixture(scope="session")
def clean_set(tmp_path_factory):
    """2,000 noise-free particles, 64 px, 2 A/px."""
    return _simulate(tmp_path_factory, "clean", n_particles=2000, snr=1e12, seed=1)


@pytest.fixture(scope="session")
def noisy_set(tmp_path_factory):
    """2,000 particles at SNR 0.1, 64 px, 2 A/px."""
    return _simulate(tmp_path_factory, "noisy", n_particles=2000, snr=0.1, seed=2)
