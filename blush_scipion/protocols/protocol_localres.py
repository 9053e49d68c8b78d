"""Local resolution of a refined map's half maps, as relion_postprocess --locres (`blush localres`)."""

import os

from pwem.objects import Volume
from pwem.protocols import ProtAnalysis3D
from pyworkflow.protocol import params

from ..constants import PLUGIN_LABEL
from ..engine.cli.localres import LocalresSettings
from ..reports.localres import local_resolution_record, write_localres_png
from .engine_form import UNSET_IS_MINUS_ONE, EngineForm
from .engine_job import EngineJob
from .half_maps import HalfMapsInput
from .label import PluginLabel


class ProtBlushLocalResolution(PluginLabel, HalfMapsInput, EngineForm, EngineJob, ProtAnalysis3D):
    """Local resolution as relion_postprocess --locres estimates it: the half maps' FSC in soft
    spherical windows on a grid, corrected for the window by phase randomisation and read at 0.143,
    blended voxel by voxel. Outputs the local-resolution map (Å per voxel) and the average of the
    half maps filtered at each place's resolution."""

    _label = "local resolution"
    _possibleOutputs = {"outputLocalResolution": Volume, "outputVolume": Volume}
    _references = ["Cardone2013", "Chen2013"]
    _stepNames = ("localResolutionStep", "createOutputStep")
    _settings = LocalresSettings

    def _defineParams(self, form):
        form.addSection(label="Input")
        self._defineHalfMapsInput(
            form,
            "Solvent mask (for example post-process's): only windows that touch "
            "it are computed, and the summary gives the median local resolution "
            "inside it. Empty: windows over the whole box.",
        )
        self._addSetting(
            form,
            "samplingA",
            "sampling",
            label="Window spacing (Å)",
            note="RELION's --locres_sampling. Finer spacing maps finer variation and costs more windows.",
        )
        self._addSetting(
            form,
            "radiusA",
            "radius",
            label="Window radius (Å)",
            conversion=UNSET_IS_MINUS_ONE,
            expertLevel=params.LEVEL_ADVANCED,
            note="The radius of each window's flat centre; -1: half the spacing.",
        )
        self._addSetting(
            form,
            "randomizeAtA",
            "randomize_at",
            label="Randomise phases beyond (Å)",
            expertLevel=params.LEVEL_ADVANCED,
            note="Each window's FSC is corrected by randomising the phases past this resolution "
            "(RELION's --locres_randomize_at).",
        )
        self._addSetting(
            form,
            "minResolutionA",
            "min_resolution",
            label="Coarsest resolution (Å)",
            expertLevel=params.LEVEL_ADVANCED,
            note="No window is reported coarser than this (RELION's --locres_minres).",
        )
        self._addSetting(
            form,
            "bfactor",
            "bfactor",
            label="B-factor of the filtered map (Å²)",
            expertLevel=params.LEVEL_ADVANCED,
            note="The filtered map is sharpened by this B-factor first; 0: none.",
        )
        form.addParallelSection(threads=1, mpi=0)

    # --- steps ---------------------------------------------------------------------------------
    def localResolutionStep(self):
        args = ["localres", "--out", self._getExtraPath("localres.mrc")] + self._halfMapArgs()
        args += self._settingArgs()
        self._runEngine(args, device=False)  # the engine's local resolution runs on the CPU

    def createOutputStep(self):
        apix = self.inputVolume.get().getSamplingRate()
        resolution = Volume(location=self._getExtraPath("localres.mrc"), objLabel="local resolution (Å)")
        filtered = Volume(
            location=self._getExtraPath("localres_filtered.mrc"), objLabel="local-resolution-filtered map"
        )
        for volume in (resolution, filtered):
            volume.setSamplingRate(apix)
        mask = self.solventMask.get()
        write_localres_png(self._getExtraPath, mask.getFileName() if mask is not None else None)
        self._defineOutputs(outputLocalResolution=resolution, outputVolume=filtered)
        self._sourceRelations(resolution, filtered)

    # --- info ----------------------------------------------------------------------------------
    def _validate(self):
        errors = self._validateHalfMaps()
        if errors:
            return errors
        lengths = {
            "Window spacing": self.samplingA,
            "Randomise phases beyond": self.randomizeAtA,
            "Coarsest resolution": self.minResolutionA,
        }
        return [f"{name} must be > 0 Å." for name, value in lengths.items() if value.get() <= 0]

    def _summary(self):
        if not os.path.exists(self._getExtraPath("localres.json")):
            return ["Output not ready yet."]
        r = local_resolution_record(self._getExtraPath)
        where = (
            f"median {r['median_in_mask']:.2f} Å inside the mask"
            if "median_in_mask" in r
            else f"median {r['window_resolution_median']:.2f} Å over the windows (no mask given)"
        )
        return [f"Local resolution from {r['windows']} windows: {where}.", "Plot: extra/slices.png."]

    def _methods(self):
        if not os.path.exists(self._getExtraPath("localres.json")):
            return []
        return [
            (
                f"Local resolution was estimated with {PLUGIN_LABEL} as relion_postprocess --locres: the "
                f"half maps' FSC in soft spherical windows {self.samplingA.get():g} Å apart [Cardone2013], "
                f"corrected by phase randomisation [Chen2013] and read at 0.143."
            )
        ]
