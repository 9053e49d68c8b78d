"""Post-processing of a refined map's half maps, as relion_postprocess (`blush postprocess`)."""

import os

from pwem.objects import FSC, Volume, VolumeMask
from pwem.protocols import ProtAnalysis3D
from pyworkflow.protocol import params

from ..constants import PLUGIN_LABEL
from ..engine.cli.postprocess import PostprocessSettings
from ..reports.postprocess import postprocess_fsc_curves, postprocess_summary, write_postprocess_pngs
from .engine_form import NEGATIVE_IS_UNSET, EngineForm
from .engine_job import EngineJob
from .half_maps import HalfMapsInput
from .label import PluginLabel


class ProtBlushPostprocess(PluginLabel, HalfMapsInput, EngineForm, EngineJob, ProtAnalysis3D):
    """The map to look at, build into and deposit, as relion_postprocess makes it: the half maps
    masked (by the given mask, or one made from their average as relion_mask_create would), their
    FSC corrected for the mask by phase randomisation, the final resolution where it falls below
    0.143, the average FSC-weighted, sharpened by a B-factor fitted to its Guinier plot (or given)
    and low-passed at the final resolution. Outputs the sharpened map, the mask and the FSC curves."""

    _label = "post-process"
    _possibleOutputs = {
        "outputVolume": Volume,
        "outputMask": VolumeMask,
        "outputFSC": FSC,
        "outputFSCs": "SetOfFSCs",
    }
    _references = ["Rosenthal2003", "Chen2013"]
    _stepNames = ("postprocessStep", "createOutputStep")
    _settings = PostprocessSettings

    def _defineParams(self, form):
        form.addSection(label="Input")
        self._defineHalfMapsInput(
            form,
            "Soft solvent mask (values 0..1, the map's box). Empty: one is made "
            "from the half maps' average (see the mask parameters below).",
        )
        form.addSection(label="Sharpening")
        form.addParam(
            "doAutoBfactor",
            params.BooleanParam,
            default=True,
            label="Estimate B-factor automatically?",
            help="Fit the B-factor to the Guinier plot of the FSC-weighted map (RELION's "
            "--auto_bfac), between the two resolutions below; No: apply the B-factor given.",
        )
        self._addSetting(
            form,
            "bfactor",
            "bfactor",
            label="B-factor (Å²)",
            default=-100,
            condition="not doAutoBfactor",
            note="Default here -100 Å²; RELION's form: -1000 Å².",
        )
        self._addSetting(
            form,
            "autobLowresA",
            "autob_lowres",
            label="Lowest resolution for fit (Å)",
            condition="doAutoBfactor",
            expertLevel=params.LEVEL_ADVANCED,
        )
        self._addSetting(
            form,
            "autobHighresA",
            "autob_highres",
            label="Highest resolution for fit (Å)",
            conversion=NEGATIVE_IS_UNSET,
            condition="doAutoBfactor",
            expertLevel=params.LEVEL_ADVANCED,
            note="-1: the final resolution.",
        )
        self._addSetting(
            form,
            "lowPassA",
            "low_pass",
            label="Low-pass filter (Å)",
            conversion=NEGATIVE_IS_UNSET,
            note="-1: the final resolution.",
        )
        form.addSection(label="Automatic mask")
        self._addSetting(
            form,
            "maskThreshold",
            "mask_threshold",
            label="Threshold (map units)",
            allowsNull=True,
            expertLevel=params.LEVEL_ADVANCED,
            note="Used only without a given mask.",
        )
        self._addSetting(
            form,
            "maskExtendPx",
            "mask_extend",
            label="Extend binary mask by (px)",
            expertLevel=params.LEVEL_ADVANCED,
            note="Used only without a given mask.",
        )
        self._addSetting(
            form,
            "maskSoftEdgePx",
            "mask_soft_edge",
            label="Soft edge (px)",
            expertLevel=params.LEVEL_ADVANCED,
            note="Used only without a given mask.",
        )
        form.addParallelSection(threads=1, mpi=0)

    # --- steps ---------------------------------------------------------------------------------
    def postprocessStep(self):
        args = ["postprocess", "--out", self._getExtraPath(), *self._halfMapArgs(), *self._settingArgs()]
        self._runEngine(args, device=False)  # the engine's post-processing runs on the CPU

    def createOutputStep(self):
        apix = self.inputVolume.get().getSamplingRate()
        volume = Volume(location=self._getExtraPath("postprocess.mrc"), objLabel="post-processed map")
        volume.setSamplingRate(apix)
        # the half maps travel on, so that local resolution (or another post-process) can follow
        volume.setHalfMaps(self.inputVolume.get().getHalfMaps().split(","))
        mask = VolumeMask(location=self._getExtraPath("postprocess_mask.mrc"), objLabel="post-process mask")
        mask.setSamplingRate(apix)
        curves = postprocess_fsc_curves(self._getExtraPath)
        fscs = self._createSetOfFSCs()
        for label, (x, y) in curves.items():
            fsc = FSC(objLabel=f"FSC ({label})")
            fsc.setData(x.tolist(), y.tolist())
            fscs.append(fsc)
        corrected = FSC(objLabel="FSC (corrected)")
        corrected.setData(*(values.tolist() for values in curves["corrected"]))
        write_postprocess_pngs(self._getExtraPath, *self._guinierFitRange())
        self._defineOutputs(outputVolume=volume, outputMask=mask, outputFSC=corrected, outputFSCs=fscs)
        self._sourceRelations(volume, mask, corrected, fscs)

    # --- helpers -------------------------------------------------------------------------------
    def _guinierFitRange(self) -> tuple:
        """(low, high) A of the B-factor fit, as the engine took them (high None: the final resolution)."""
        return self.autobLowresA.get(), NEGATIVE_IS_UNSET.to_engine(self.autobHighresA.get())

    def _done(self) -> bool:
        return os.path.exists(self._summaryFile())

    # --- info ----------------------------------------------------------------------------------
    def _validate(self):
        errors = self._validateHalfMaps()
        if errors:
            return errors
        if self.lowPassA.get() < 0 and self.lowPassA.get() != -1:
            errors.append(
                "Low-pass filter must be a resolution in Å, 0 for none, or -1 for the final resolution."
            )
        if self.doAutoBfactor.get():
            low, high = self._guinierFitRange()
            if low <= 0:
                errors.append("The lowest resolution for the B-factor fit must be > 0 Å.")
            elif high and high >= low:
                errors.append(
                    f"The B-factor fit's highest resolution ({high:g} Å) must be finer (smaller) "
                    f"than its lowest ({low:g} Å)."
                )
        if self.solventMask.get() is None and (self.maskExtendPx.get() < 0 or self.maskSoftEdgePx.get() < 0):
            errors.append("The automatic mask's extension and soft edge must be >= 0 px.")
        return errors

    def _summary(self):
        if not self._done():
            return ["Output not ready yet."]
        s = postprocess_summary(self._getExtraPath)
        how = (
            f"fitted to the Guinier plot (r² {s['guinier_correlation']:.2f})"
            if s["bfactor_fitted"]
            else "as given"
        )
        lines = [
            (
                f"Final resolution {s['resolution_angstrom']:.2f} Å (FSC 0.143, mask-corrected); "
                f"B-factor {s['bfactor']:.1f} Å² {how}; {_low_pass(s)}."
            ),
            "Mask: "
            + (
                "the one given."
                if s["mask"]
                else f"made from the half maps (threshold {s['mask_threshold']:.4g})."
            ),
        ]
        if not s["mask_used_for_resolution"]:
            lines.append(
                "Warning: the unmasked FSC reaches further than the mask-corrected one, so the "
                "resolution ignores the mask (as RELION): check the mask."
            )
        lines.append("Plots: extra/fsc.png, extra/guinier.png.")
        return lines

    def _methods(self):
        if not self._done():
            return []
        s = postprocess_summary(self._getExtraPath)
        bfactor = (
            f"a B-factor of {s['bfactor']:.1f} Å² fitted to the Guinier plot [Rosenthal2003]"
            if s["bfactor_fitted"]
            else f"a B-factor of {s['bfactor']:.1f} Å²"
        )
        return [
            (
                f"The half maps were post-processed with {PLUGIN_LABEL} as relion_postprocess: their FSC "
                f"inside a soft solvent mask was corrected by phase randomisation [Chen2013], giving a "
                f"final resolution of {s['resolution_angstrom']:.2f} Å at FSC 0.143 [Rosenthal2003]; the "
                f"map was FSC-weighted, sharpened by {bfactor} and {_low_pass(s)}."
            )
        ]


def _low_pass(summary: dict) -> str:
    """The last filter, in words (0: none was applied)."""
    at = summary["low_pass_angstrom"]
    return f"low-passed at {at:.2f} Å" if at else "not low-passed"
