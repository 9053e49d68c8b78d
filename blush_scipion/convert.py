"""Scipion sets <-> RELION STAR files for the engine, and nothing else.

Alignment follows the convention of Scipion's RELION plugin, so other plugins read our poses as
they read RELION's: a projection alignment's 4x4 matrix is the inverse of the ZYZ rotation of
the negated Euler angles with the negated origin as its translation (shifts in pixels).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from pwem.constants import ALIGN_PROJ
from pwem.convert.transformations import euler_from_matrix, euler_matrix, translation_from_matrix
from pwem.objects import CTFModel, Particle, Transform
from pyworkflow.object import Integer

from .engine.particles import Particles

MRC_EXTENSIONS = (".mrc", ".mrcs", ".st", ".map")


def matrix_from_pose(rot: float, tilt: float, psi: float, origin_x: float, origin_y: float) -> np.ndarray:
    """RELION pose (degrees, origin in pixels) -> Scipion ALIGN_PROJ 4x4 matrix."""
    m = euler_matrix(*(-np.deg2rad([rot, tilt, psi])), "szyz")
    m[:3, 3] = -np.array([origin_x, origin_y, 0.0])
    return np.linalg.inv(m)


def transform_2d(psi: float, origin_x: float, origin_y: float) -> Transform:
    """RELION 2D alignment (in-plane angle in degrees, origin in pixels) -> Scipion ALIGN_2D
    Transform, as Scipion's RELION plugin reads rlnAnglePsi and the origins for 2D: rotation by
    psi, the origin as the translation, not inverted."""
    m = euler_matrix(0.0, 0.0, np.deg2rad(psi), "szyz")
    m[:3, 3] = [origin_x, origin_y, 0.0]
    return Transform(m)


def pose_from_matrix(matrix: np.ndarray) -> tuple[float, float, float, float, float]:
    """Inverse of matrix_from_pose: (rot, tilt, psi, origin_x, origin_y)."""
    m = np.linalg.inv(matrix)
    shifts = -translation_from_matrix(m)
    rot, tilt, psi = -np.rad2deg(euler_from_matrix(m, axes="szyz"))
    return float(rot), float(tilt), float(psi), float(shifts[0]), float(shifts[1])


def image_name(particle) -> str:
    index, path = particle.getLocation()
    return f"{index:06d}@{os.path.abspath(path)}"


def particles_to_star(particle_set, star_path: str, with_poses: bool = False) -> None:
    """Write a RELION 3.1 STAR file for a Scipion SetOfParticles, referencing its MRC stacks in
    place. Optics groups come from each particle's _rlnOpticsGroup (as Scipion's RELION plugin
    keeps them; group 1 where absent), all with the set's acquisition."""
    acq = particle_set.getAcquisition()
    apix = particle_set.getSamplingRate()
    rows = []
    for p in particle_set.iterItems(orderBy="id"):
        if not p.isEnabled():  # as copyItems skips them, so output rows stay in step
            continue
        ctf = p.getCTF()
        group = getattr(p, "_rlnOpticsGroup", None)
        row = {
            "rlnImageName": image_name(p),
            "rlnOpticsGroup": int(group.get()) if group is not None else 1,
            "rlnDefocusU": ctf.getDefocusU(),
            "rlnDefocusV": ctf.getDefocusV(),
            "rlnDefocusAngle": ctf.getDefocusAngle(),
            "rlnPhaseShift": ctf.getPhaseShift() or 0.0,
        }
        if with_poses and p.hasTransform():
            rot, tilt, psi, ox, oy = pose_from_matrix(p.getTransform().getMatrix())
            row.update(
                rlnAngleRot=rot,
                rlnAngleTilt=tilt,
                rlnAnglePsi=psi,
                rlnOriginXAngst=ox * apix,
                rlnOriginYAngst=oy * apix,
            )
        rows.append(row)
    groups = sorted({r["rlnOpticsGroup"] for r in rows}) or [1]
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": groups,
            "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups],
            "rlnAmplitudeContrast": acq.getAmplitudeContrast(),
            "rlnSphericalAberration": acq.getSphericalAberration(),
            "rlnVoltage": acq.getVoltage(),
            "rlnImagePixelSize": apix,
            "rlnImageSize": particle_set.getXDim(),
            "rlnImageDimensionality": 2,
        }
    )
    Particles(pd.DataFrame(rows), optics, os.path.dirname(os.path.abspath(star_path))).write(star_path)


def particle_from_row(particles: Particles, i: int, apix: float) -> Particle:
    """Particle i of a STAR file as a Scipion Particle with CTF and, if present, its pose."""
    (path,), (index,) = particles.image_locations([i])
    p = Particle(location=(int(index) + 1, str(path)))
    row = particles.table.iloc[i]
    p._rlnOpticsGroup = Integer(int(row["rlnOpticsGroup"]))
    if particles.has_ctf():
        ctf = CTFModel()
        ctf.setStandardDefocus(
            float(row["rlnDefocusU"]), float(row["rlnDefocusV"]), float(row["rlnDefocusAngle"])
        )
        ctf.setPhaseShift(float(row.get("rlnPhaseShift", 0.0)))
        p.setCTF(ctf)
    if particles.has_poses():
        ox = float(row.get("rlnOriginXAngst", 0.0)) / apix
        oy = float(row.get("rlnOriginYAngst", 0.0)) / apix
        p.setTransform(
            Transform(
                matrix_from_pose(
                    float(row["rlnAngleRot"]), float(row["rlnAngleTilt"]), float(row["rlnAnglePsi"]), ox, oy
                )
            )
        )
    return p


def star_to_particles(star_path: str, particle_set, stacks: dict | None = None) -> Particles:
    """Fill an empty SetOfParticles from a RELION STAR file (CTF, optics, poses where present);
    `stacks` maps the STAR's stack paths to the files the set should name instead."""
    particles = Particles.read(star_path)
    apix = particles.pixel_size
    acq = particle_set.getAcquisition()
    acq.setVoltage(float(particles.optics["rlnVoltage"].iloc[0]))
    acq.setSphericalAberration(float(particles.optics["rlnSphericalAberration"].iloc[0]))
    acq.setAmplitudeContrast(float(particles.optics["rlnAmplitudeContrast"].iloc[0]))
    particle_set.setSamplingRate(apix)
    particle_set.setHasCTF(particles.has_ctf())
    if particles.has_poses():
        particle_set.setAlignment(ALIGN_PROJ)
    for i in range(len(particles)):
        p = particle_from_row(particles, i, apix)
        if stacks:
            index, path = p.getLocation()
            p.setLocation(index, stacks[path])
        particle_set.append(p)
    return particles


def update_poses_from_star(particle_set, star_path: str, out_set) -> None:
    """Copy `particle_set` into `out_set` with the poses of a run_data.star written in id order."""
    particles = Particles.read(star_path)
    apix = particles.pixel_size
    rows = iter(range(len(particles)))

    def update(item, _row=None):
        item.setTransform(particle_from_row(particles, next(rows), apix).getTransform())

    out_set.copyInfo(particle_set)
    out_set.setAlignment(ALIGN_PROJ)
    out_set.copyItems(particle_set, updateItemCallback=update, itemDataIterator=None, orderBy="id")
