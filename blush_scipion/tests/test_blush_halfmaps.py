"""Training half maps: their FSC follows the requested curve; blur and noise are shared right."""

import pytest
import torch

from blush_scipion.engine.blush.halfmaps import simulate_half_maps, target_fsc
from blush_scipion.engine.density import density_from_model
from blush_scipion.engine.fsc import fourier_shell_correlation, resolution_at

from .conftest import MODEL


@pytest.fixture(scope="module")
def truth():
    return density_from_model(MODEL, 64, 1.5, bfactor=20)


def test_target_curve_passes_0143_at_the_resolution():
    fsc = target_fsc(96, 1.2, 6.0)
    assert resolution_at(fsc, 0.143, 96, 1.2) == pytest.approx(6.0, rel=0.02)
    assert fsc[1] > 0.98 and fsc[-1] < 0.01


@pytest.mark.parametrize("resolution", [4.0, 8.0])
def test_half_maps_reach_the_requested_resolution(truth, resolution):
    g = torch.Generator().manual_seed(0)
    h1, h2 = simulate_half_maps(truth, 1.5, resolution, g)
    measured = resolution_at(fourier_shell_correlation(h1, h2), 0.143, 64, 1.5)
    assert measured == pytest.approx(resolution, rel=0.1)
    # the halves estimate the truth: their average correlates with it better than either half
    avg = fourier_shell_correlation(0.5 * (h1 + h2), truth)
    one = fourier_shell_correlation(h1, truth)
    assert (avg[5:25] >= one[5:25] - 0.02).all()


def test_misalignment_blur_scales_the_shared_signal(truth):
    # the halves' signal is the truth times exp(-B s^2 / 4): measured by regression per shell
    from blush_scipion.engine.fourier import rfft3_centered, rfft_shell_index_3d, shell_sum

    g = torch.Generator().manual_seed(1)
    h1, h2 = simulate_half_maps(truth, 1.5, 4.0, g, blur_bfactor=100.0)
    ft, fh = rfft3_centered(truth.double()), rfft3_centered((0.5 * (h1 + h2)).double())
    shells = rfft_shell_index_3d(64)
    gain = shell_sum((fh * ft.conj()).real, shells, 33) / shell_sum(ft.abs() ** 2, shells, 33)
    s2 = (torch.arange(33, dtype=torch.float64) / (64 * 1.5)) ** 2
    expected = torch.exp(-100.0 * s2 / 4)
    assert torch.allclose(gain[2:20], expected[2:20], atol=0.05)
