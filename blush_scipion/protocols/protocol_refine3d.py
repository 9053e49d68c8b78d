"""3D auto-refinement (gold-standard) with the Blush engine."""

import os

from pwem.objects import FSC, Volume, VolumeMask
from pwem.protocols import ProtRefine3D
from pyworkflow.protocol import params

from .. import convert
from ..engine.refine3d import RefineSettings
from ..reports.postprocess import postprocess_fsc_curves, postprocess_summary, write_postprocess_pngs
from ..reports.refine import refine_fsc_curve, write_refine_pngs
from .blush_switch import BlushSwitch
from .engine_form import NEGATED, ORDER_FROM_ONE, EngineForm
from .engine_job import EngineJob
from .label import PluginLabel
from .particles_input import ParticlesInput

SAMPLINGS = ["30", "15", "7.5", "3.75", "1.875"]  # degrees: HEALPix orders 1..5 (RELION's 360 / (6 2^k))


class ProtBlushRefine3D(PluginLabel, ParticlesInput, BlushSwitch, EngineForm, EngineJob, ProtRefine3D):
    """Gold-standard 3D auto-refinement as in RELION: two independent half sets, an E-step over
    HEALPix orientations and translations with a Gaussian noise model, tau2 regularisation from
    the half-map FSC, auto-sampling until convergence. With Blush, each half set's reference is
    its reconstruction denoised by a 3D U-Net and low-passed where the FSC ends (Kimanius et al.
    2024): small particles at low SNR align where the standard prior fails. Outputs the refined
    map with its half maps, the aligned particles and the FSC (and, with Blush, the denoised map)."""

    _label = "3D auto-refine"
    _possibleOutputs = {
        "outputVolume": Volume,
        "outputParticles": "SetOfParticles",
        "outputFSC": FSC,
        "outputVolumeBlush": Volume,
        "outputVolumePostprocessed": Volume,
        "outputMaskPostprocess": VolumeMask,
        "outputFSCPostprocess": FSC,
    }
    _references = ["Scheres2012"]
    _settings = RefineSettings

    def _defineParams(self, form):
        self._defineParticlesInput(form)
        self._defineReferenceInput(
            form,
            "Initial reference",
            "Same box and pixel size as the particles; it is low-pass filtered first.",
            "Solvent mask (0..1) instead of a sphere.",
        )
        self._addSetting(form, "symmetryGroup", "symmetry", label="Symmetry")
        self._addSetting(
            form,
            "initialLowPassFilterA",
            "ini_high",
            label="Initial low-pass filter (Å)",
            note="The refinement then does not inherit the reference's fine detail (model bias). Filter "
            "harder (a larger value) for a reference from a different structure. RELION's Refine3D form: "
            "60 Å.",
        )
        self._addMaskDiameter(form)
        self._defineBlushSection(
            form,
            "Use Blush regularisation?",
            "Default here: Yes. Helps most for small particles and low SNR; the gold-standard FSC "
            "still comes from the raw half maps.",
            default=True,
        )
        self._addSetting(
            form,
            "blushFromResolution",
            "blush_from_resolution",
            label="Blush from resolution (Å)",
            condition="useBlush",
            expertLevel=params.LEVEL_ADVANCED,
            note="The standard prior before. On a pseudo-symmetric 17 kDa protein at low SNR, Blush from "
            "the first iteration let mirror views mix: 11.1 Å against 10.2 Å.",
        )
        self._addSetting(
            form,
            "blushSkipSpectralTrailing",
            "blush_trailing",
            label="Skip spectral trailing?",
            conversion=NEGATED,
            condition="useBlush",
            expertLevel=params.LEVEL_ADVANCED,
            note="Yes passes the flag: the denoiser's detail beyond the FSC = 1/7 resolution is kept, "
            "which is for diagnosis only.",
        )
        form.addSection(label="Sampling")
        self._addSetting(
            form,
            "angularSamplingDeg",
            "healpix_order",
            label="Initial angular sampling (deg)",
            conversion=ORDER_FROM_ONE,
            paramClass=params.EnumParam,
            choices=SAMPLINGS,
            note="Auto-sampling makes it finer as the resolution improves. RELION's form: 7.5 deg.",
        )
        self._addSetting(
            form,
            "offsetSearchRangePix",
            "offset_range",
            label="Offset search range (px)",
            note="From each particle's current offset, in the first iterations; 5 px, as RELION's form.",
        )
        self._addSetting(
            form,
            "offsetSearchStepPix",
            "offset_step",
            label="Offset search step (px)",
            note="In the first iterations; auto-sampling makes it finer. RELION's form: 1 px.",
        )
        self._addSetting(
            form,
            "localSearchAutoSamplingDeg",
            "local_from_order",
            label="Local searches from auto-sampling (deg)",
            conversion=ORDER_FROM_ONE,
            paramClass=params.EnumParam,
            choices=SAMPLINGS,
            expertLevel=params.LEVEL_ADVANCED,
            note="Order 3 is 7.5 deg; RELION's form: 1.8 deg.",
        )
        self._addSetting(
            form,
            "maxIterations",
            "max_iterations",
            label="Maximum iterations",
            default=25,
            expertLevel=params.LEVEL_ADVANCED,
            note="Default here 25. A cap only: the refinement stops earlier once neither the resolution "
            "nor the poses improve. RELION's form has no such field (relion_refine's --auto_iter_max: "
            "999).",
        )
        form.addSection(label="Post-process")
        form.addParam(
            "doPostprocess",
            params.BooleanParam,
            default=True,
            label="Post-process the result?",
            help="In the same run, as the post-process protocol with its defaults (blush postprocess, "
            "as relion_postprocess): the half maps inside the reference mask (or one made from "
            "them), the mask-corrected FSC, FSC weighting, a B-factor fitted to the Guinier "
            "plot; outputs the sharpened map, its mask and FSC. RELION's auto-refine leaves "
            "this to a separate job.",
        )
        form.addParallelSection(threads=1, mpi=1)  # MPI: torch.distributed ranks on CPUs

    # --- steps ---------------------------------------------------------------------------------
    @property
    def _stepNames(self) -> tuple[str, ...]:
        post = ("postprocessStep",) if self.doPostprocess.get() else ()
        return ("convertInputStep", "refineStep", *post, "createOutputStep")

    def refineStep(self):
        self._runDriver("refine3d")

    def postprocessStep(self):
        args = [
            "postprocess",
            "--half1",
            self._getExtraPath("run_half1_class001_unfil.mrc"),
            "--half2",
            self._getExtraPath("run_half2_class001_unfil.mrc"),
            "--out",
            self._postprocessPath(),
            "--angpix",
            self.inputParticles.get().getSamplingRate(),
        ]
        if self.referenceMask.get() is not None:
            args += ["--mask", self.referenceMask.get().getFileName()]
        self._runEngine(args, device=False)

    def _postprocessPath(self, *name: str) -> str:
        return self._getExtraPath("postprocess", *name)

    def createOutputStep(self):
        particles = self.inputParticles.get()
        volume = Volume(location=self._getExtraPath("run_class001.mrc"))
        volume.setSamplingRate(particles.getSamplingRate())
        volume.setHalfMaps(
            [
                self._getExtraPath("run_half1_class001_unfil.mrc"),
                self._getExtraPath("run_half2_class001_unfil.mrc"),
            ]
        )
        aligned = self._createSetOfParticles()
        convert.update_poses_from_star(particles, self._getExtraPath("run_data.star"), aligned)
        fsc = FSC(objLabel="gold-standard FSC")
        fsc.setData(*(values.tolist() for values in refine_fsc_curve(self._getExtraPath)))
        write_refine_pngs(self._getExtraPath, self.getRunName())
        outputs = {"outputVolume": volume, "outputParticles": aligned, "outputFSC": fsc}
        if self.useBlush.get():
            outputs["outputVolumeBlush"] = Volume(
                location=self._getExtraPath("run_class001_blush.mrc"), objLabel="Blush-denoised map"
            )
            outputs["outputVolumeBlush"].setSamplingRate(particles.getSamplingRate())
        if self.doPostprocess.get():
            outputs.update(
                self._postprocessOutputs(particles.getSamplingRate(), volume.getHalfMaps().split(","))
            )
        self._defineOutputs(**outputs)
        for out in outputs.values():
            self._defineSourceRelation(self.inputParticles, out)
        self._defineSourceRelation(self.referenceVolume, volume)

    def _postprocessOutputs(self, apix: float, half_maps: list) -> dict:
        """The post-processed map (carrying the half maps), its mask and corrected FSC, with plots."""
        sharpened = Volume(location=self._postprocessPath("postprocess.mrc"), objLabel="post-processed map")
        sharpened.setSamplingRate(apix)
        sharpened.setHalfMaps(half_maps)
        mask = VolumeMask(
            location=self._postprocessPath("postprocess_mask.mrc"), objLabel="post-process mask"
        )
        mask.setSamplingRate(apix)
        corrected = FSC(objLabel="FSC (corrected)")
        corrected.setData(*(v.tolist() for v in postprocess_fsc_curves(self._postprocessPath)["corrected"]))
        write_postprocess_pngs(self._postprocessPath)
        return {
            "outputVolumePostprocessed": sharpened,
            "outputMaskPostprocess": mask,
            "outputFSCPostprocess": corrected,
        }

    # --- info ----------------------------------------------------------------------------------
    def _validate(self):
        particles, reference = self.inputParticles.get(), self.referenceVolume.get()
        if particles is None or reference is None:
            return ["Input not ready: particles and an initial reference are needed."]
        errors = self._inputErrors() + self._blushWeightsErrors() + self._symmetryErrors()
        if particles.getSize() < 2:
            errors.append("At least two particles are needed for the gold-standard half sets.")
        if self.useBlush.get() and self.blushFromResolution.get() < 0:
            errors.append("Blush from resolution must be 0 (from the first iteration) or a resolution in Å.")
        return errors

    def _summary(self):
        if not os.path.exists(self._summaryFile()):
            return ["Output not ready yet."]
        s = self._readSummary()
        lines = [
            f"Gold-standard resolution {s['resolution_angstrom']:.2f} Å after {s['iterations']} iterations "
            f"({s['wall_seconds']:.0f} s, {s['particles']} particles)"
            + (f", Blush regularisation{blush_start(s)}." if s.get("blush") else ", standard prior.")
        ]
        lines += [
            f"iteration {h['iteration']}: {h['resolution']:.2f} Å, sampling {h['angular_step']:.2f} deg"
            + (
                f" (expected accuracy {h['accuracy_rotation']:.2f} deg, "
                f"{h['accuracy_translation_angstrom']:.2f} Å)"
                if "accuracy_rotation" in h
                else ""
            )
            for h in s["history"]
        ]
        if "peak_rss_gb" in s:
            lines.append(
                f"Peak memory {s['peak_rss_gb']:.1f} GB"
                + (f" (GPU {s['cuda_peak_allocated_gb']:.1f} GB)" if "cuda_peak_allocated_gb" in s else "")
                + "."
            )
        lines.append("Plots: extra/fsc.png, extra/progress.png, extra/slices.png.")
        if self.doPostprocess.get() and os.path.exists(self._postprocessPath("summary.json")):
            p = postprocess_summary(self._postprocessPath)
            lines.append(
                f"Post-processed: {p['resolution_angstrom']:.2f} Å (mask-corrected FSC 0.143), B-factor "
                f"{p['bfactor']:.1f} Å²; plots in extra/postprocess/."
            )
        return lines

    def _methods(self):
        if not os.path.exists(self._summaryFile()):
            return []
        s = self._readSummary()
        blush = f" with Blush regularisation [Kimanius2024]{blush_start(s)}" if s.get("blush") else ""
        return [
            f"{s['particles']} particles were refined in 3D by gold-standard auto-refinement "
            f"[Scheres2012]{blush} with symmetry {s['symmetry']} to {s['resolution_angstrom']:.2f} Å "
            f"(FSC 0.143)"
            + (
                f", the angular sampling reaching {s['finest_angular_step']:.2f} deg."
                if "finest_angular_step" in s
                else "."
            )
        ]

    def _citations(self):
        return (
            self._references
            + self._blushCitations()
            + (["Rosenthal2003", "Chen2013"] if self.doPostprocess.get() else [])
        )


def blush_start(summary: dict) -> str:
    """The first iteration whose references Blush made, for the summary and methods text."""
    used = [h["iteration"] for h in summary["history"] if h.get("blush", True)]
    if not used:
        return " (not used: the resolution never reached its start)"
    if used[0] == 1:
        return " from the first iteration"
    at = min(h["resolution"] for h in summary["history"][: used[0] - 1])
    return f" from iteration {used[0]} (once the resolution had reached {at:.1f} Å)"
