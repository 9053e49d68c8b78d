"""Point-group symmetry operators in RELION's axis conventions."""
from __future__ import annotations

import re

import torch

from .rotation import axis_angle_matrix


def symmetry_operators(group: str) -> torch.Tensor:
    """(S, 3, 3) rotation matrices of a point group: C<n>, D<n>, T or O (identity first).

    Cn: n-fold axis along z. Dn: plus a 2-fold along x. T: 2-folds along x, y, z and 3-folds
    along the cube diagonals. O: 4-folds along x, y, z.
    """
    name = group.strip().upper()
    if (m := re.fullmatch(r"C(\d+)", name)) and int(m[1]) >= 1:
        gens = [axis_angle_matrix((0, 0, 1), 360 / int(m[1]))]
    elif (m := re.fullmatch(r"D(\d+)", name)) and int(m[1]) >= 1:
        gens = [axis_angle_matrix((0, 0, 1), 360 / int(m[1])), axis_angle_matrix((1, 0, 0), 180)]
    elif name == "T":
        gens = [axis_angle_matrix((0, 0, 1), 180), axis_angle_matrix((1, 1, 1), 120)]
    elif name == "O":
        gens = [axis_angle_matrix((0, 0, 1), 90), axis_angle_matrix((1, 1, 1), 120)]
    else:
        raise ValueError(f"symmetry group {group!r} not supported (use C<n>, D<n>, T or O)")
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
