"""The `blush` command-line contract of DESIGN.md: names, flags, outputs and error messages."""

import json
import subprocess
import sys

import pytest

from .conftest import MODEL


def blush(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "blush_scipion.engine.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    sim = blush(
        "simulate",
        "--model",
        MODEL,
        "--out",
        out / "sim",
        "--n",
        400,
        "--box",
        48,
        "--apix",
        2.5,
        "--snr",
        0.5,
        "--seed",
        7,
    )
    assert sim.returncode == 0, sim.stderr
    rec = blush(
        "reconstruct", "--particles", out / "sim" / "truth.star", "--out", out / "rec.mrc", "--sym", "C1"
    )
    assert rec.returncode == 0, rec.stderr
    return out


def test_simulate_writes_the_contracted_files(cli_run):
    sim = cli_run / "sim"
    for name in ("particles.star", "particles.mrcs", "truth.mrc", "truth.star", "summary.json"):
        assert (sim / name).stat().st_size > 0, name
    summary = json.loads((sim / "summary.json").read_text())
    assert summary["n_particles"] == 400 and summary["box"] == 48 and summary["pixel_size"] == 2.5


def test_reconstruct_and_fsc_against_truth(cli_run):
    assert (cli_run / "rec_half1_unfil.mrc").exists() and (cli_run / "rec_half2_unfil.mrc").exists()
    result = blush("fsc", cli_run / "rec.mrc", cli_run / "sim" / "truth.mrc", "--json", cli_run / "fsc.json")
    assert result.returncode == 0, result.stderr
    assert "resolution at FSC 0.143" in result.stdout
    numbers = json.loads((cli_run / "fsc.json").read_text())
    assert len(numbers["fsc"]) == 25 and numbers["fsc"][0] == pytest.approx(1, abs=1e-3)
    # 400 particles at SNR 0.5 reach well past 10 A against the truth
    assert 5.0 <= numbers["resolution_05"] < 10.0


def test_fsc_fits_a_turned_map_onto_its_reference(cli_run, tmp_path):
    import torch

    from blush_scipion.engine.fit import transform_map
    from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at
    from blush_scipion.engine.mrc import read_map, write_map
    from blush_scipion.engine.rotation import axis_angle_matrix

    volume, apix = read_map(cli_run / "rec.mrc")
    turn = axis_angle_matrix([0.0, 0.6, 0.8], 4.0)
    write_map(tmp_path / "turned.mrc", transform_map(volume, turn, torch.tensor([0.5, 0.0, -0.5])), apix)
    truth = cli_run / "sim" / "truth.mrc"
    plain = blush("fsc", tmp_path / "turned.mrc", truth, "--json", tmp_path / "plain.json")
    fitted = blush("fsc", tmp_path / "turned.mrc", truth, "--fit", "--json", tmp_path / "fitted.json")
    assert plain.returncode == 0 and fitted.returncode == 0, fitted.stderr
    assert "fitted onto map2: turned 4." in fitted.stdout
    before, after = (
        json.loads((tmp_path / f"{name}.json").read_text())["resolution_05"] for name in ("plain", "fitted")
    )
    unturned = resolution_at(
        fourier_shell_correlation(volume, read_map(truth)[0]), 0.5, volume.shape[-1], apix
    )
    assert after < 0.9 * before and after == pytest.approx(unturned, rel=0.05)


def test_fsc_with_a_mask(cli_run, tmp_path):
    import torch

    from blush_scipion.engine.mask import spherical_mask
    from blush_scipion.engine.mrc import write_map

    write_map(tmp_path / "mask.mrc", spherical_mask(48, 16, 4), 2.5)
    result = blush(
        "fsc",
        cli_run / "rec_half1_unfil.mrc",
        cli_run / "rec_half2_unfil.mrc",
        "--mask",
        tmp_path / "mask.mrc",
        "--json",
        tmp_path / "f.json",
    )
    assert result.returncode == 0, result.stderr
    numbers = json.loads((tmp_path / "f.json").read_text())
    assert {"unmasked", "masked", "random_masked", "corrected"} <= set(numbers)
    assert torch.tensor(numbers["corrected"]).isfinite().all()


def test_errors_name_the_file_and_the_problem(cli_run, tmp_path):
    star = (cli_run / "sim" / "truth.star").read_text()
    (tmp_path / "broken.star").write_text(star.replace("_rlnAngleTilt", "_rlnAngleTiltX"))
    result = blush("reconstruct", "--particles", tmp_path / "broken.star", "--out", tmp_path / "x.mrc")
    assert result.returncode == 2 and "broken.star" in result.stderr and "rlnAngleTilt" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.mrc").exists()
    result = blush("fsc", cli_run / "rec.mrc", tmp_path / "missing.mrc")
    assert result.returncode == 2 and "missing.mrc" in result.stderr
    result = blush("simulate", "--model", tmp_path / "nothing.pdb", "--out", tmp_path / "s")
    assert result.returncode == 2 and "nothing.pdb" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        "simulate",
        "reconstruct",
        "fsc",
        "refine3d",
        "denoise",
        "train",
        "relion-hook",
        "postprocess",
        "localres",
    ],
)
def test_every_command_has_help(command):
    result = blush(command, "--help")
    assert result.returncode == 0 and "usage: blush" in result.stdout
