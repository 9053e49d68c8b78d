"""How finely the images can be aligned at the current resolution: RELION's expected accuracies of
the rotations and translations (MlOptimiser::calculateExpectedAngularErrors), which tell the
auto-sampling when its steps are finer than the data can tell apart.

For each particle of a sample, at its current pose: the smallest change of one Euler angle (rot,
tilt or psi, chosen at random), or of one shift coordinate, whose CTF-modulated projection differs
from the unchanged one by a log-likelihood of ln 100 under the noise model (a probability ratio of
0.01, RELION's pvalue); the accuracy is the mean over the sample. The changes are tried on
RELION's ladder (0.05 degree steps up to 0.2, ..., 5 degree steps up to 30; 0.1 pixel steps up to
1, ..., 1 pixel steps up to 10); a particle that never reaches the threshold counts one step past
the end, as in RELION.
"""

from __future__ import annotations

import math

import torch

from .projector import SlicePoints, extract_central_slices
from .rotation import euler_to_matrix, matrix_to_euler

PVALUE = math.log(100.0)


def _ladder(steps: list[tuple[float, float]], limit: float) -> torch.Tensor:
    """RELION's increasing trial errors: add the step of the first (below, step) whose bound the
    error is still under, until past `limit` (that last value is kept: it stands for 'worse')."""
    values, error = [], 0.0
    while error <= limit:
        error = round(error + next(step for below, step in steps if error < below - 1e-9), 6)
        values.append(error)
    return torch.tensor(values)


ANGLES = _ladder(
    [(0.2, 0.05), (1.0, 0.1), (2.0, 0.2), (5.0, 0.5), (10.0, 1.0), (20.0, 2.0), (math.inf, 5.0)], 30.0
)
SHIFTS = _ladder([(1.0, 0.1), (2.0, 0.2), (5.0, 0.5), (10.0, 1.0), (math.inf, 2.0)], 10.0)


def _first_over(delta: torch.Tensor, trials: torch.Tensor) -> torch.Tensor:
    """(S, E) log-likelihood differences along the ladder -> (S,) the first trial past PVALUE."""
    over = delta > PVALUE
    index = torch.where(over.any(1), over.float().argmax(1), len(trials) - 1)
    return trials.to(delta.device)[index]


def expected_accuracy(
    reference: torch.Tensor,
    rotations: torch.Tensor,
    ctf: torch.Tensor,
    weight: torch.Tensor,
    points: SlicePoints,
    generator: torch.Generator,
    pad: int = 2,
) -> tuple[float, float]:
    """(degrees, pixels): the expected rotational and translational accuracy of a sample.

    reference: the projector's Fourier volume; rotations: (S, 3, 3) current poses; ctf: (S, P);
    weight: (S, P) Hermitian weight over noise variance (the likelihood's); `generator` picks the
    angle or axis each particle is perturbed along.
    """
    s, device = len(rotations), rotations.device
    a1 = extract_central_slices(reference, rotations, points, pad)  # (S, P)
    signal = ctf**2 * weight * a1.abs() ** 2

    eulers = torch.stack(matrix_to_euler(rotations.cpu()), dim=1)  # (S, 3)
    which = torch.randint(3, (s,), generator=generator)
    perturbed = eulers[:, None, :] + torch.nn.functional.one_hot(which, 3)[:, None, :] * ANGLES[None, :, None]
    moved = euler_to_matrix(*perturbed.reshape(-1, 3).unbind(1)).to(device)
    a2 = extract_central_slices(reference, moved, points, pad).reshape(s, len(ANGLES), -1)
    delta_rot = ((ctf**2 * weight)[:, None] * (a1[:, None] - a2).abs() ** 2).sum(-1)

    axis = torch.randint(2, (s,), generator=generator).to(device)
    k = points.coords.to(device)[:, axis].T.float()  # (S, P): kx or ky
    phase = 2 * math.pi * k[:, None, :] * SHIFTS.to(device)[None, :, None] / points.n
    delta_shift = (signal[:, None] * 2 * (1 - torch.cos(phase))).sum(-1)  # |1 - e^{i phase}|^2
    return (float(_first_over(delta_rot, ANGLES).mean()), float(_first_over(delta_shift, SHIFTS).mean()))
