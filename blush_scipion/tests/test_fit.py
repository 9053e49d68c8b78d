import torch

from blush_scipion.engine.fit import fit_rigid, transform_map
from blush_scipion.engine.fsc import fourier_shell_correlation
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.rotation import angular_distance, axis_angle_matrix


def test_a_drifted_map_is_docked_back_onto_its_truth(noisy_set):
    # The truth turned by 3 deg and shifted by a voxel, as a refinement's frame drifts: the fit
    # finds the inverse motion, and the docked map correlates with the truth at every shell.
    truth, apix = read_map(noisy_set / "truth.mrc")
    r0 = axis_angle_matrix([0.3, -0.8, 0.5], 3.0)
    t0 = torch.tensor([0.7, -0.4, 0.3])
    drifted = transform_map(truth, r0, t0)
    before = fourier_shell_correlation(drifted, truth)
    rotation, shift, corr = fit_rigid(drifted, truth, apix)
    docked = transform_map(drifted, rotation, shift)
    after = fourier_shell_correlation(docked, truth)
    assert float(angular_distance(rotation @ r0, torch.eye(3))) < 0.3  # the fit undoes the drift
    assert torch.allclose(shift, -r0.T @ t0, atol=0.15)
    assert before[20:31].mean() < 0.7 and after[1:31].min() > 0.97 and corr > 0.99
