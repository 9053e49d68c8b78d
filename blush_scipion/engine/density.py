"""Electron-scattering density of an atomic model (gemmi), band-limited onto a cubic grid."""

from __future__ import annotations

import os

import gemmi
import numpy as np
import torch

from .fourier import resize_fourier_3d


class ModelError(ValueError):
    """An atomic model that cannot be used, with the file named in the message."""


def read_model(path: str | os.PathLike) -> gemmi.Structure:
    """Protein atoms of the first model (no hydrogens, waters or ligands)."""
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelError(f"{path}: cannot read atomic model: {e}") from e
    st.setup_entities()
    st.remove_hydrogens()
    st.remove_ligands_and_waters()
    st.remove_empty_chains()
    if len(st) == 0 or not any(True for _ in st[0].all()):
        raise ModelError(f"{path}: no protein atoms")
    return st


def model_centre(path: str | os.PathLike) -> np.ndarray:
    """(3,) the centre of mass (unweighted by element) of a model's protein atoms, A."""
    st = read_model(path)
    return np.array([cra.atom.pos.tolist() for cra in st[0].all()]).mean(0)


def density_from_model(
    path: str | os.PathLike,
    box: int,
    pixel_size: float,
    bfactor: float = 30.0,
    centre: np.ndarray | None = None,
) -> torch.Tensor:
    """(box, box, box) [z, y, x] map of the model's electron scattering potential.

    Atoms use the 5-Gaussian electron form factors of International Tables C 4.3.2.2 (gemmi's
    DensityCalculatorE) with one B-factor (A^2) for all atoms; `centre` (A, default the model's
    centre of mass) goes to the box centre, so maps of related models can share one frame. Sampled on a
    finer grid, then Fourier-cropped: the map is band-limited to
    the grid's Nyquist rather than aliased.
    """
    st = read_model(path)
    xyz = np.array([cra.atom.pos.tolist() for cra in st[0].all()])
    centre = xyz.mean(0) if centre is None else np.asarray(centre, dtype=float)
    extent = box * pixel_size
    radius = np.linalg.norm(xyz - centre, axis=1).max()
    if radius > 0.5 * extent - 2 * pixel_size:
        raise ModelError(
            f"{path}: model radius {radius:.1f} A does not fit a box of {box} x "
            f"{pixel_size} A = {extent:.1f} A; use a larger --box or --apix"
        )
    shift = gemmi.Position(*(extent / 2 - centre))
    for chain in st[0]:
        for residue in chain:
            for atom in residue:
                atom.pos = atom.pos + shift
                atom.b_iso = 0.0
    st.cell = gemmi.UnitCell(extent, extent, extent, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    oversample = max(1, min(3, 384 // box))
    calc = gemmi.DensityCalculatorE()
    calc.d_min = 0  # grid size set below, not from a resolution
    calc.blur = bfactor
    calc.set_grid_cell_and_spacegroup(st)
    calc.grid.set_size(box * oversample, box * oversample, box * oversample)
    calc.put_model_density_on_grid(st[0])
    fine = torch.from_numpy(np.array(calc.grid, copy=True).transpose(2, 1, 0).copy())  # [x,y,z] -> [z,y,x]
    return resize_fourier_3d(fine.double(), box).float()
