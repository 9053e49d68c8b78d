"""Import particles from a RELION STAR file (and its MRC stacks) with CTF, optics and poses."""

import os

import pyworkflow.utils as pwutils
from pwem.protocols import EMProtocol
from pyworkflow.protocol import params

from .. import convert
from ..engine.particles import Particles
from ..engine.star import StarError
from .label import PluginLabel


def project_names(stacks) -> dict:
    """Stack path -> a file name unique in one folder: its own name, or, where two stacks share it,
    its path below their common folder with '/' as '_' (as pwem's imports name files in extra/)."""
    stacks = sorted(set(stacks))
    by_name = {}
    for path in stacks:
        by_name.setdefault(os.path.basename(path), []).append(path)
    names = {}
    for name, paths in by_name.items():
        if len(paths) == 1:
            names[paths[0]] = name
            continue
        common = os.path.commonpath([os.path.abspath(p) for p in paths])
        for path in paths:
            names[path] = os.path.relpath(os.path.abspath(path), common).replace(os.sep, "_")
    if len(set(names.values())) < len(names):  # a joined path met another stack's own name
        names = {path: f"{i:06d}_{os.path.basename(path)}" for i, path in enumerate(stacks)}
    return names


class ProtBlushImportParticles(PluginLabel, EMProtocol):
    """Import particles from a RELION 3.0/3.1 STAR file: images (MRC stacks, linked or copied into the
    run's extra/ folder), CTF, acquisition from the optics table, and any poses (rlnAngleRot/Tilt/Psi,
    rlnOrigin*Angst)."""

    _label = "import particles (RELION STAR)"
    _possibleOutputs = {"outputParticles": "SetOfParticles"}
    _references = ["Scheres2012"]

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "starFile",
            params.PathParam,
            label="STAR file",
            help="RELION particles STAR file; image names resolve against its folder, then the "
            "current directory.",
        )
        form.addParam(
            "copyFiles",
            params.BooleanParam,
            default=False,
            expertLevel=params.LEVEL_ADVANCED,
            label="Copy files?",
            help="By default the image stacks are not copied into the project, to avoid "
            "duplicating data: the run's extra/ folder holds symbolic links to the "
            "original files (as Scipion's own imports do), and the links break if those "
            "files move. Copy them to make the project independent of the originals.",
        )

    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep)

    def createOutputStep(self):
        star = self.starFile.get()
        p = Particles.read(star)
        stacks = {}
        put = pwutils.copyFile if self.copyFiles.get() else pwutils.createAbsLink
        for source, name in project_names(p.image_locations(range(len(p)))[0]).items():
            stacks[source] = self._getExtraPath(name)
            put(source, stacks[source])
        particle_set = self._createSetOfParticles()
        convert.star_to_particles(star, particle_set, stacks)
        self._defineOutputs(outputParticles=particle_set)

    def _validate(self):
        path = self.starFile.get()
        if not path or not os.path.exists(path):
            return [f"STAR file {path!r} does not exist."]
        try:
            p = Particles.read(path)
            _ = p.pixel_size  # refuses optics groups of mixed pixel sizes
            stacks = set(p.image_locations(range(len(p)))[0])
        except (StarError, ValueError) as e:
            return [str(e)]
        missing = sorted(s for s in stacks if not os.path.exists(s))
        if missing:
            return [f"{path}: image stack {missing[0]} not found ({len(missing)} of {len(stacks)} missing)."]
        if not all(s.lower().endswith(convert.MRC_EXTENSIONS) for s in stacks):
            return [f"{path}: only MRC image stacks (.mrcs, .mrc) are supported."]
        return []

    def _summary(self):
        if not hasattr(self, "outputParticles"):
            return ["Output not ready yet."]
        s = self.outputParticles
        kept = "copied into" if self.copyFiles.get() else "linked (symbolic links to the originals) in"
        return [
            f"Imported {s.getSize()} particles of {s.getXDim()} px at {s.getSamplingRate():.3f} Å/px "
            f"from {self.starFile.get()}" + (" with poses." if s.hasAlignmentProj() else "."),
            f"Image stacks {kept} the run's extra/ folder.",
        ]

    def _methods(self):
        if not hasattr(self, "outputParticles"):
            return []
        return [f"{self.outputParticles.getSize()} particles were imported from a RELION STAR file."]
