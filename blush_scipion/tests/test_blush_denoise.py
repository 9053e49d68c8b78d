"""Blush on maps: the working grid, spectral trailing, and the shipped denoiser on a held-out
structure (its half map gets closer to the truth), through the engine and `blush denoise`."""

import json

import pytest
import torch

from blush_scipion.engine.blush.denoiser import (
    SHIPPED_WEIGHTS,
    Denoiser,
    denoise_map,
    load_denoiser,
    working_grid,
)
from blush_scipion.engine.blush.halfmaps import simulate_half_maps
from blush_scipion.engine.blush.model import BlushUNet
from blush_scipion.engine.blush.trailing import spectral_trailing, trailing_shell
from blush_scipion.engine.density import density_from_model
from blush_scipion.engine.fourier import rfft3_centered, rfft_shell_index_3d, shell_sum
from blush_scipion.engine.fsc import fourier_shell_correlation
from blush_scipion.engine.mrc import read_map, write_map

from .command_line import blush
from .conftest import MODEL


def shell_power(volume):
    n = volume.shape[-1]
    return shell_sum(rfft3_centered(volume).abs() ** 2, rfft_shell_index_3d(n), n // 2 + 1)


def test_working_grid_resamples_only_outside_the_trained_range():
    d = Denoiser(BlushUNet(2, 4), voxel_min=1.5, voxel_max=3.0, block=16, source="")
    assert working_grid(64, 2.0, d) == (64, 2.0)
    m, voxel = working_grid(200, 1.0, d)  # finer than the range: to about 1.5 A, even box
    assert m == 134 and abs(voxel - 200 / 134) < 1e-9
    assert working_grid(60, 4.0, d) == (80, 3.0)


def test_trailing_shell_is_the_last_before_the_fsc_drops_below_one_seventh():
    fsc = torch.tensor([1.0, 0.99, 0.9, 0.5, 0.2, 0.1, 0.3, 0.05])
    assert trailing_shell(fsc) == 4  # the later rise at shell 6 does not count
    assert trailing_shell(torch.ones(8)) == 7


def test_spectral_trailing_keeps_nothing_past_the_fsc_and_fills_in_past_the_denoiser_grid():
    g = torch.Generator().manual_seed(0)
    denoised, regularised = torch.randn(32, 32, 32, generator=g), torch.randn(32, 32, 32, generator=g)
    fsc = torch.where(torch.arange(17) <= 8, 0.9, 0.0)
    trailed = spectral_trailing(denoised, regularised, fsc, denoiser_nyquist=16)
    power, before = shell_power(trailed), shell_power(denoised)
    assert torch.allclose(power[:6], before[:6], rtol=1e-4)  # full pass below the edge (7 +- 1.5)
    assert (power[9:] < 1e-6 * before[9:]).all()  # nothing past it
    # the denoiser's grid ends at shell 5 (a coarser working grid): the regularised map fills in above
    filled = spectral_trailing(denoised, regularised, fsc, denoiser_nyquist=5)
    cc = fourier_shell_correlation(filled, regularised)
    assert (cc[8:16] > 0.999).all() and (fourier_shell_correlation(filled, denoised)[1:2] > 0.999).all()


def test_a_checkpoint_that_does_not_fit_the_model_is_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"foo": torch.zeros(3)}, str(tmp_path / "odd.safetensors"), metadata={"depth": "2", "width": "4"}
    )
    with pytest.raises(ValueError, match="odd.safetensors.*do not fit"):
        load_denoiser(tmp_path / "odd.safetensors")


@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no shipped weights in this checkout")
def test_shipped_denoiser_brings_a_held_out_half_map_closer_to_the_truth(tmp_path):
    """4gcnA is in the validate split: the shipped weights never saw it."""
    truth = density_from_model(MODEL, 64, 2.0)
    g = torch.Generator().manual_seed(1)
    half1, half2 = simulate_half_maps(truth, 2.0, 9.0, g, blur_bfactor=50.0)
    denoised, nyquist = denoise_map(half1, 2.0, load_denoiser(), diameter=0.8 * 64 * 2.0)
    assert nyquist == 32
    raw, den = fourier_shell_correlation(half1, truth), fourier_shell_correlation(denoised, truth)
    resolved = slice(3, 15)  # up to 8.5 A, where the half maps' FSC is above 1/7
    assert (den[resolved] > raw[resolved]).all(), (raw, den)
    # and from the command line, trailed: nothing past the half maps' resolution
    write_map(tmp_path / "h1.mrc", half1, 2.0)
    write_map(tmp_path / "h2.mrc", half2, 2.0)
    run = blush(
        "denoise", "--half1", tmp_path / "h1.mrc", "--half2", tmp_path / "h2.mrc", "--out", tmp_path / "d.mrc"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((tmp_path / "d.json").read_text())
    out, apix = read_map(tmp_path / "d.mrc")
    assert apix == 2.0 and record["trailing_shell"] < 20
    power = shell_power(out)
    assert (power[record["trailing_shell"] + 2 :] < 1e-6 * power[1]).all()
    assert (fourier_shell_correlation(out, truth)[3:12] > fourier_shell_correlation(half1, truth)[3:12]).all()


def test_denoise_refuses_half_maps_that_do_not_match(tmp_path):
    write_map(tmp_path / "a.mrc", torch.zeros(32, 32, 32), 2.0)
    write_map(tmp_path / "b.mrc", torch.zeros(32, 32, 32), 2.5)
    run = blush(
        "denoise", "--half1", tmp_path / "a.mrc", "--half2", tmp_path / "b.mrc", "--out", tmp_path / "d.mrc"
    )
    assert run.returncode == 2 and "b.mrc" in run.stderr and "pixel size" in run.stderr
