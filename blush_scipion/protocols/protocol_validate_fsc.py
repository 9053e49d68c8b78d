"""FSC validation of two half maps, with the phase-randomised mask correction."""

import json
from pathlib import Path

from pwem.objects import FSC
from pwem.protocols import ProtAnalysis3D
from pyworkflow.protocol import params

from ..constants import PLUGIN_LABEL
from .engine_job import EngineJob
from .label import PluginLabel


class ProtBlushValidateFsc(PluginLabel, EngineJob, ProtAnalysis3D):
    """Fourier shell correlation between two half maps: the curve, the resolution at FSC 0.143
    and 0.5, and with a mask the corrected FSC (Chen et al. 2013, as relion_postprocess)."""

    _label = "validate FSC"
    _possibleOutputs = {"outputFSC": FSC}
    _references = ["Rosenthal2003"]  # the 0.143 threshold
    _stepNames = ("fscStep", "createOutputStep")

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "halfMap1",
            params.PointerParam,
            pointerClass="Volume",
            label="Half map 1",
            help="One of two maps reconstructed from independent halves of the particles (for "
            "example extra/run_half1_class001_unfil.mrc of 3D auto-refine), unfiltered and "
            "unmasked.",
        )
        form.addParam(
            "halfMap2",
            params.PointerParam,
            pointerClass="Volume",
            label="Half map 2",
            help="The other half map: same box and pixel size as half map 1.",
        )
        form.addParam(
            "mask",
            params.PointerParam,
            pointerClass="VolumeMask",
            allowsNull=True,
            label="Mask (optional)",
            help="Soft mask; the FSC is then corrected for its effect.",
        )

    def fscStep(self):
        args = [
            self.halfMap1.get().getFileName(),
            self.halfMap2.get().getFileName(),
            "--json",
            self._getExtraPath("fsc.json"),
        ]
        if self.mask.get() is not None:
            args += ["--mask", self.mask.get().getFileName()]
        self._runEngine(["fsc"] + args, device=False)

    def createOutputStep(self):
        result = json.loads(Path(self._getExtraPath("fsc.json")).read_text())
        n, apix = result["box"], result["pixel_size"]
        fsc = FSC(objLabel="FSC (corrected)" if self.mask.get() is not None else "FSC")
        fsc.setData([k / (n * apix) for k in range(len(result["fsc"]))], result["fsc"])
        self._defineOutputs(outputFSC=fsc)
        self._defineSourceRelation(self.halfMap1, fsc)
        self._defineSourceRelation(self.halfMap2, fsc)

    def _validate(self):
        errors = []
        if self.halfMap1.get() is None or self.halfMap2.get() is None:
            return ["Input not ready: both half maps are needed."]
        v1, v2 = self.halfMap1.get(), self.halfMap2.get()
        if v1.getDim() != v2.getDim():
            errors.append(f"Half maps differ in size: {v1.getDim()} and {v2.getDim()}.")
        if abs(v1.getSamplingRate() - v2.getSamplingRate()) > 1e-3:
            errors.append(
                f"Half maps differ in pixel size: {v1.getSamplingRate()} and {v2.getSamplingRate()} Å."
            )
        if self.mask.get() is not None and self.mask.get().getDim() != v1.getDim():
            errors.append(f"The mask is {self.mask.get().getDim()}, the maps {v1.getDim()}.")
        return errors

    def _summary(self):
        if not hasattr(self, "outputFSC"):
            return ["Output not ready yet."]
        return [
            f"Resolution at FSC 0.143: {self.outputFSC.calculateResolution(0.143)} Å; "
            f"at FSC 0.5: {self.outputFSC.calculateResolution(0.5)} Å."
        ]

    def _methods(self):
        return [
            f"The Fourier shell correlation between the half maps was computed with {PLUGIN_LABEL}"
            + (", corrected for the mask by phase randomisation [Chen2013]" if self.mask.get() else "")
            + "; the resolution is where it falls below 0.143 [Rosenthal2003]."
        ]

    def _citations(self):
        return self._references + (["Chen2013"] if self.mask.get() is not None else [])
