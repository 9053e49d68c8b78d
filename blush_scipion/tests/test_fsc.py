"""FSC, resolution read-out and the phase-randomisation mask correction."""

import pytest
import torch

from blush_scipion.engine.fsc import (
    fourier_shell_correlation,
    mask_corrected_fsc,
    randomize_phases_beyond,
    resolution_at,
)
from blush_scipion.engine.mask import threshold_mask
from blush_scipion.engine.mrc import read_map


def test_identical_maps_correlate_fully_and_independent_noise_does_not():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 32, 32, generator=g), torch.randn(32, 32, 32, generator=g)
    assert torch.allclose(fourier_shell_correlation(a, a), torch.ones(17), atol=1e-5)
    assert fourier_shell_correlation(a, b)[4:].abs().max() < 0.15


def test_resolution_interpolates_between_shells():
    fsc = torch.tensor([1.0, 0.9, 0.6, 0.4, 0.1, 0.0])  # n = 10
    assert resolution_at(fsc, 0.5, 10, 2.0) == pytest.approx(10 * 2.0 / 2.5)
    assert resolution_at(fsc, 0.143, 10, 2.0) == pytest.approx(10 * 2.0 / (3 + 0.257 / 0.3), rel=1e-3)
    assert resolution_at(torch.ones(6), 0.143, 10, 2.0) == 4.0  # never drops: Nyquist


def test_phase_randomisation_keeps_amplitudes_and_low_shells():
    g = torch.Generator().manual_seed(1)
    vol = torch.randn(24, 24, 24, generator=g)
    rnd = randomize_phases_beyond(vol, 5, g)
    fsc = fourier_shell_correlation(vol, rnd)
    assert (fsc[:6] > 0.999).all() and fsc[8:].abs().max() < 0.3
    assert torch.fft.rfftn(rnd).abs().sum() == pytest.approx(
        float(torch.fft.rfftn(vol).abs().sum()), rel=1e-3
    )


def test_mask_correction_removes_the_masks_correlation(noisy_set):
    # Half maps that share the truth up to shell 10 and are independent beyond (their phases
    # randomised apart): a tight mask inflates the FSC past shell 10, the correction removes it.
    truth, _ = read_map(noisy_set / "truth.mrc")
    g = torch.Generator().manual_seed(3)
    h1, h2 = randomize_phases_beyond(truth, 10, g), randomize_phases_beyond(truth, 10, g)
    mask = threshold_mask(truth, float(truth.max()) * 0.2, extend=1, edge=3)
    curves = mask_corrected_fsc(h1, h2, mask)
    assert 9 <= curves["randomize_from_shell"] <= 11
    assert curves["unmasked"][14:].abs().mean() < 0.05
    assert curves["masked"][13:20].mean() > 0.1  # the mask's own correlation
    assert curves["corrected"][14:].mean().abs() < 0.05
    assert (curves["corrected"][:9] > 0.95).all()
