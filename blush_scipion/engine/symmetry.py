"""Point-group symmetry operators in RELION's axis conventions."""

from __future__ import annotations

import math
import re

import torch

from .rotation import axis_angle_matrix


def symmetry_operators(group: str) -> torch.Tensor:
    """(S, 3, 3) rotation matrices of a point group, in RELION's settings (identity first).

    Cn: n-fold axis along z. Dn: plus a 2-fold along x. T: a 3-fold along z and a 2-fold in the
    yz plane. O: 4-folds along x, y, z. I or I2 (Crowther): 2-folds along x, y, z, a 5-fold along
    (1, 0, golden ratio); I1: the 5-fold along (0, 1, golden ratio). Each checked against
    relion_reconstruct --sym (test_reconstruct.py).
    """
    name = group.strip().upper()
    if (m := re.fullmatch(r"C(\d+)", name)) and int(m[1]) >= 1:
        gens = [axis_angle_matrix((0, 0, 1), 360 / int(m[1]))]
    elif (m := re.fullmatch(r"D(\d+)", name)) and int(m[1]) >= 1:
        gens = [axis_angle_matrix((0, 0, 1), 360 / int(m[1])), axis_angle_matrix((1, 0, 0), 180)]
    elif name == "T":
        tilt = math.atan(math.sqrt(2))  # between a 2-fold and a 3-fold axis
        gens = [
            axis_angle_matrix((0, 0, 1), 120),
            axis_angle_matrix((0, math.sin(tilt), math.cos(tilt)), 180),
        ]
    elif name == "O":
        gens = [axis_angle_matrix((0, 0, 1), 90), axis_angle_matrix((1, 1, 1), 120)]
    elif name in ("I", "I1", "I2"):
        golden = (1 + math.sqrt(5)) / 2
        five = (0, 1, golden) if name == "I1" else (1, 0, golden)
        gens = [
            axis_angle_matrix((0, 0, 1), 180),
            axis_angle_matrix((1, 0, 0), 180),
            axis_angle_matrix(five, 72),
        ]
    else:
        raise ValueError(f"symmetry group {group!r} not supported (use C<n>, D<n>, T, O, I, I1 or I2)")
    return _closure(gens)


def _closure(generators: list[torch.Tensor]) -> torch.Tensor:
    ops = [torch.eye(3)]
    frontier = list(ops)
    while frontier:
        new = []
        for a in frontier:
            for g in generators:
                c = g @ a
                if not any(torch.allclose(c, o, atol=1e-4) for o in ops):
                    ops.append(c)
                    new.append(c)
        frontier = new
    return torch.stack(ops)
