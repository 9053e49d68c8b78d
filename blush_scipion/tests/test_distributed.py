"""refine3d on two processes (torch.distributed, gloo on CPU, launched by torchrun) gives the
single-process result, and a two-rank run's checkpoint continues on one rank."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from blush_scipion.engine.fsc import fourier_shell_correlation
from blush_scipion.engine.mrc import read_map, read_stack
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.simulate import SimulationSettings, simulate_from_model

from .conftest import MODEL
from .same_result import assert_same_refinement

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")


def command(*args, ranks: int = 1) -> list[str]:
    cli = [sys.executable, "-m", "blush_scipion.engine.cli", *map(str, args)]
    if ranks == 1:
        return cli
    # one thread per rank: the two ranks share this machine's cores as one process would
    return [TORCHRUN, "--standalone", f"--nproc-per-node={ranks}", "--no-python", *cli]


def run(*args, ranks: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command(*args, ranks=ranks), capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def particles(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    simulate_from_model(
        MODEL, SimulationSettings(n_particles=300, box=40, pixel_size=3.0, snr=0.5, seed=4), out
    )
    return out


def refine3d_args(particles) -> list:
    """A short refine3d of the simulated particles from their truth (4 iterations, order 3 at most)."""
    start = ["--particles", particles / "particles.star", "--ref", particles / "truth.mrc"]
    return ["refine3d", *start, "--max-order", 3, "--max-iter", 4]


def test_two_ranks_give_the_single_process_result(particles, tmp_path):
    args = refine3d_args(particles)
    one = run(*args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    two = run(*args, "--out", tmp_path / "two", ranks=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("iteration   1:") == 1  # rank 0 alone logs
    assert_same_refinement(tmp_path / "one", tmp_path / "two")
    sa, sb = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("one", "two"))
    assert sa["iterations"] == sb["iterations"] and (sa["ranks"], sb["ranks"]) == (1, 2)
    assert abs(sa["resolution_angstrom"] - sb["resolution_angstrom"]) < 0.01 * sa["resolution_angstrom"]
    assert_rank_peaks(sb)


def assert_rank_peaks(summary: dict) -> None:
    """Each rank's peak memory reported, the largest as the run's; a rank holds more than torch alone."""
    per_rank = summary["peak_rss_gb_per_rank"]
    assert len(per_rank) == summary["ranks"] == 2 and summary["peak_rss_gb"] == max(per_rank)
    assert all(0.2 < gb < 20 for gb in per_rank)


def test_a_two_rank_run_continues_on_one(particles, tmp_path):
    args = [*refine3d_args(particles), "--out", tmp_path / "r"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        command(*args, ranks=2),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    checkpoint = tmp_path / "r" / "run_it001_optimiser.json"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    # torchrun's workers may sit in sessions of their own: kill every process of this run by its folder
    for _ in range(50):
        if subprocess.run(["pkill", "-9", "-f", str(tmp_path / "r")]).returncode == 1:  # none left
            break
        time.sleep(0.2)
    proc.wait()
    assert checkpoint.exists() and not (tmp_path / "r" / "summary.json").exists()
    resumed = run(*args, "--continue")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "continuing after iteration" in resumed.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["iterations"] >= 2


def test_class2d_on_two_ranks_gives_the_single_process_classes(particles, tmp_path):
    args = ["class2d", "--particles", particles / "particles.star", "--k", 3, "--iter", 4, "--seed", 2]
    for name, ranks in (("one", 1), ("two", 2)):
        done = run(*args, "--out", tmp_path / name, ranks=ranks)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = (read_stack(tmp_path / name / "run_classes.mrcs") for name in ("one", "two"))
    for x, y in zip(a, b):
        assert float(torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1]) > 0.99
    ca, cb = (
        Particles.read(tmp_path / name / "run_data.star").column("rlnClassNumber") for name in ("one", "two")
    )
    assert (ca == cb).mean() > 0.98
    assert_rank_peaks(json.loads((tmp_path / "two" / "summary.json").read_text()))


def test_class3d_on_two_ranks_gives_the_single_process_classes(particles, tmp_path):
    args = [
        "class3d",
        "--particles",
        particles / "particles.star",
        "--ref",
        particles / "truth.mrc",
        "--k",
        2,
        "--iter",
        2,
        "--healpix-order",
        1,
        "--seed",
        3,
    ]
    for name, ranks in (("one", 1), ("two", 2)):
        done = run(*args, "--out", tmp_path / name, ranks=ranks)
        assert done.returncode == 0, done.stderr[-3000:]
    for c in (1, 2):
        a, b = (read_map(tmp_path / name / f"run_class{c:03d}.mrc")[0] for name in ("one", "two"))
        assert (fourier_shell_correlation(a, b)[1:] > 0.99).all()
    ca, cb = (
        Particles.read(tmp_path / name / "run_data.star").column("rlnClassNumber") for name in ("one", "two")
    )
    assert (ca == cb).mean() > 0.98
    assert_rank_peaks(json.loads((tmp_path / "two" / "summary.json").read_text()))


def test_train_on_two_ranks_gives_the_single_process_network(tmp_path):
    """blush train, data-parallel: each rank simulates its share of every step's batch (each sample
    from its own seed, as with --workers) and DDP averages the gradients, so two ranks train the
    single-process (--workers 1) network up to summation order. Compared: the loss per step and the
    network's output, not every weight: a convolution's bias before an InstanceNorm has no gradient
    but rounding noise, which AdamW turns into steps of +-lr in either run (seen: 3e-3 apart)."""
    from blush_scipion.engine.blush.model import BlushUNet
    from blush_scipion.engine.blush.training import TrainSettings, model_sampler
    from blush_scipion.engine.blush.weights import load_state

    args = [
        "train",
        "--models",
        MODEL,
        "--depth",
        2,
        "--width",
        4,
        "--block",
        16,
        "--voxel-min",
        3,
        "--voxel-max",
        3,
        "--steps",
        4,
        "--batch",
        2,
    ]
    for name, ranks, extra in (("one", 1, ["--workers", 1]), ("two", 2, [])):
        (tmp_path / name).mkdir()
        done = run(*args, *extra, "--out", tmp_path / name / "w.safetensors", ranks=ranks)
        assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 alone logs and writes
    assert done.stdout.count("step      4/4") == 1 and done.stdout.count("trained on") == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["w.safetensors", "w.safetensors.json"]
    a, b = (json.loads((tmp_path / name / "w.safetensors.json").read_text()) for name in ("one", "two"))
    assert (a["ranks"], b["ranks"]) == (1, 2)
    # float32 sums in another order: 1e-7 apart seen; another draw of samples would differ by O(1)
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-5)
    # the same validation set on one rank or two (each evaluates its half, sums all-reduced): 2e-7 apart seen
    assert [v["step"] for v in b["validation"]] == [0, 1, 2, 3, 4]
    assert [v["loss"] for v in a["validation"]] == pytest.approx(
        [v["loss"] for v in b["validation"]], rel=1e-5
    )
    s = TrainSettings(depth=2, width=4, block=16, voxel_min=3.0, voxel_max=3.0)
    inputs = model_sampler([MODEL], s)(torch.Generator().manual_seed(0))[0][None]
    outputs = []
    for name in ("one", "two"):
        net = BlushUNet(2, 4)
        net.load_state_dict(load_state(tmp_path / name / "w.safetensors"))
        with torch.no_grad():
            outputs.append(net(inputs))
    for x, y in zip(*outputs):  # denoised map and mask logit, of order 1: 1e-4 apart seen
        assert torch.allclose(x, y, atol=1e-3), float((x - y).abs().max())
