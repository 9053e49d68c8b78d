"""Two refinements that must have come to the same result (a continued run, a run on several ranks)."""

from pathlib import Path

from blush_scipion.engine.fsc import fourier_shell_correlation
from blush_scipion.engine.mrc import read_map
from blush_scipion.engine.particles import Particles
from blush_scipion.engine.rotation import angular_distance


def assert_same_refinement(a: Path, b: Path) -> None:
    """The final maps agree (FSC > 0.99 in every shell) and so do the poses (< 1% differ by > 0.1 deg)."""
    map_a, map_b = (read_map(folder / "run_class001.mrc")[0] for folder in (a, b))
    assert (fourier_shell_correlation(map_a, map_b)[1:] > 0.99).all()
    ra, rb = (Particles.read(folder / "run_data.star").rotations() for folder in (a, b))
    assert float((angular_distance(ra, rb) > 0.1).float().mean()) < 0.01
