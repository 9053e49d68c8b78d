"""Import particles from a RELION STAR file (and its MRC stacks) with CTF, optics and poses."""
import os

from pwem.protocols import EMProtocol
from pyworkflow.protocol import params

from .. import convert
from ..engine.particles import Particles
from ..engine.star import StarError
from .label import PluginLabel


class ProtBlushImportParticles(PluginLabel, EMProtocol):
    """Import particles from a RELION 3.0/3.1 STAR file: images (MRC stacks, used in place), CTF,
    acquisition from the optics table, and any poses (rlnAngleRot/Tilt/Psi, rlnOrigin*Angst)."""
    _label = "import particles (RELION STAR)"
    _possibleOutputs = {"outputParticles": "SetOfParticles"}
    _references = ["Scheres2012"]

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("starFile", params.PathParam, label="STAR file",
                      help="RELION particles STAR file; image names resolve against its folder, then the "
                           "current directory.")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep)

    def createOutputStep(self):
        particle_set = self._createSetOfParticles()
        convert.star_to_particles(self.starFile.get(), particle_set)
        self._defineOutputs(outputParticles=particle_set)

    def _validate(self):
        path = self.starFile.get()
        if not path or not os.path.exists(path):
            return [f"STAR file {path!r} does not exist."]
        try:
            p = Particles.read(path)
            p.pixel_size
            missing = [s for s in set(p.image_locations(range(len(p)))[0]) if not os.path.exists(s)]
        except (StarError, ValueError) as e:
            return [str(e)]
        if missing:
            return [f"{path}: image stack {missing[0]} not found ({len(missing)} missing)."]
        if not all(s.lower().endswith(convert.MRC_EXTENSIONS) for s in set(p.image_locations(range(len(p)))[0])):
            return [f"{path}: only MRC image stacks (.mrcs, .mrc) are supported."]
        return []

    def _summary(self):
        if not hasattr(self, "outputParticles"):
            return ["Output not ready yet."]
        s = self.outputParticles
        return [f"Imported {s.getSize()} particles of {s.getXDim()} px at {s.getSamplingRate():.3f} Å/px "
                f"from {self.starFile.get()}" + (" with poses." if s.hasAlignmentProj() else ".")]

    def _methods(self):
        if not hasattr(self, "outputParticles"):
            return []
        return [f"{self.outputParticles.getSize()} particles were imported from a RELION STAR file."]
