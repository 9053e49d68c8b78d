"""Mini-batches for large sets: RELION 4's VDAM schedule, run as on-line EM.

RELION's gradient-driven classification (--grad) visits a random mini-batch per iteration: a
small one for the first 30% of the iterations, growing linearly to a large one for the last 20%,
with a step size that falls from 0.9 to 0.5 and tau2_fudge rising from 1 to its final value (more
regularisation while the batches are small). We keep that schedule and take the step on the
M-step's sufficient statistics (Cappe & Moulines' on-line EM): the running sums become
(1 - step) x running + step x (N / B) x the batch's sums. The batch's sums, scaled by N / B, are
an unbiased estimate of the whole set's, so the running sums settle where full EM's do; while
batches are small they are noisy, which the lower tau2_fudge of the early phase tempers, and
they hold the noise of fewer particles than they stand for, so the SSNR that sets the resolution
and the E-step's shells is scaled down to those particles (running_weights). Classes that fall
below a tenth of an even share are re-seeded from the largest (RELION's
--class_inactivity_threshold). The last iteration is an ordinary EM pass over every particle, so
every particle gets its class from the final averages, as in RELION's closing iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SubsetRule:
    """A default mini-batch size: a share of the set, within bounds (RELION's)."""

    share: float
    least: int
    most: int

    def size(self, n_particles: int) -> int:
        return int(np.clip(round(self.share * n_particles), self.least, self.most))

    def __str__(self) -> str:  # as --help states the default
        return f"{100 * self.share:g}% of the set, {self.least:,} to {self.most:,}"


FIRST_SUBSET = SubsetRule(0.005, 200, 5000)
LAST_SUBSET = SubsetRule(0.1, 1000, 50000)


@dataclass(frozen=True)
class MiniBatchSchedule:
    iterations: int
    ini_subset: int  # particles per batch in the initial phase
    fin_subset: int  # ... in the final phase
    ini_frac: float = 0.3  # share of the iterations in the initial phase (RELION's --grad_ini_frac)
    fin_frac: float = 0.2  # ... in the final phase (--grad_fin_frac)
    ini_step: float = 0.9
    fin_step: float = 0.5

    @classmethod
    def for_set(
        cls, n_particles: int, iterations: int, ini_subset: int | None = None, fin_subset: int | None = None
    ) -> MiniBatchSchedule:
        """RELION's default batch sizes (FIRST_SUBSET at first, LAST_SUBSET at the end) where none is
        given; never more than the set."""
        ini = ini_subset or FIRST_SUBSET.size(n_particles)
        fin = fin_subset or LAST_SUBSET.size(n_particles)
        return cls(iterations, min(ini, n_particles), min(max(fin, ini), n_particles))

    def progress(self, iteration: int) -> float:
        """0 through the initial phase, rising linearly to 1 at the final phase (0-based iteration)."""
        ini = round(self.ini_frac * self.iterations)
        fin = round(self.fin_frac * self.iterations)
        between = max(1, self.iterations - ini - fin)
        return float(np.clip((iteration - ini) / between, 0.0, 1.0))

    def subset_size(self, iteration: int) -> int:
        """Particles in this iteration's batch; the set's size at the last iteration (a full pass)."""
        if self.is_full_pass(iteration):
            return -1
        return int(round(self.ini_subset + (self.fin_subset - self.ini_subset) * self.progress(iteration)))

    def step(self, iteration: int) -> float:
        return self.ini_step + (self.fin_step - self.ini_step) * self.progress(iteration)

    def tau2_fudge(self, iteration: int, final: float) -> float:
        return 1.0 + (final - 1.0) * self.progress(iteration)

    def is_full_pass(self, iteration: int) -> bool:
        return iteration >= self.iterations - 1


def batch_rows(n_particles: int, size: int, seed: int, iteration: int) -> np.ndarray:
    """This iteration's batch: `size` distinct rows (sorted, for reading), drawn reproducibly from
    (seed, iteration) so a continued run visits the same batches; all rows when size < 0."""
    if size < 0 or size >= n_particles:
        return np.arange(n_particles)
    rng = np.random.default_rng([seed, iteration])
    return np.sort(rng.choice(n_particles, size, replace=False))


def running_weights(signal: float, noise: float, step: float, n_particles: int, batch: int) -> list[float]:
    """The running sums' weights after a step, [signal, noise]: how many particles' signal they
    carry, and how many particles' noise variance. A sum over m particles has both equal to m; the
    running sums hold the noise of signal^2 / noise particles (about B (2 - step) / step), so their
    SSNR is signal / noise times what their weights say."""
    scale = n_particles / batch
    return [(1 - step) * signal + step * n_particles, (1 - step) ** 2 * noise + step**2 * scale**2 * batch]
