"""3D auto-refinement (gold-standard) with the Blush engine."""

import json
import os
from pathlib import Path

from pwem.objects import FSC, Volume, VolumeMask
from pwem.protocols import ProtRefine3D
from pyworkflow.protocol import params

from .. import convert
from ..engine.blush import TRAINED_RESOLUTION_MAX
from ..engine.mrc import read_map, write_map
from ..engine.symmetry import symmetry_operators
from ..reports.postprocess import postprocess_fsc_curves, postprocess_summary, write_postprocess_pngs
from ..reports.refine import refine_fsc_curve, write_refine_pngs
from .engine_job import EngineJob
from .label import PluginLabel

SAMPLINGS = ["30", "15", "7.5", "3.75", "1.875"]  # degrees: HEALPix orders 1..5 (RELION's 360 / (6 2^k))


class ProtBlushRefine3D(PluginLabel, EngineJob, ProtRefine3D):
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

    def _defineParams(self, form):
        form.addSection(label="Input")
        self._defineDeviceParams(form)
        form.addParam(
            "inputParticles",
            params.PointerParam,
            pointerClass="SetOfParticles",
            label="Input particles",
            help="Particles with CTF; MRC stacks.",
        )
        form.addParam(
            "referenceVolume",
            params.PointerParam,
            pointerClass="Volume",
            label="Initial reference",
            help="Same box and pixel size as the particles; it is low-pass filtered first.",
        )
        form.addParam(
            "referenceMask",
            params.PointerParam,
            pointerClass="VolumeMask",
            allowsNull=True,
            label="Reference mask (optional)",
            help="Solvent mask (0..1) instead of a sphere.",
        )
        form.addParam(
            "symmetryGroup",
            params.StringParam,
            default="C1",
            label="Symmetry",
            help="C<n>, D<n>, T, O or I (RELION's axis conventions).",
        )
        form.addParam(
            "initialLowPassFilterA",
            params.FloatParam,
            default=40,
            label="Initial low-pass filter (Å)",
            help="The initial reference is low-pass filtered to this resolution so that the "
            "refinement does not inherit its fine detail (model bias). Filter harder (a "
            "larger value) for a reference from a different structure. Default here 40 Å; "
            "RELION's Refine3D form: 60 Å.",
        )
        form.addParam(
            "maskDiameterA",
            params.FloatParam,
            default=-1,
            label="Particle mask diameter (Å)",
            help="Diameter of the soft spherical solvent mask; -1: 90% of the box. RELION's form "
            "asks for a diameter (default 200 Å).",
        )
        form.addSection(label="Blush")
        form.addParam(
            "useBlush",
            params.BooleanParam,
            default=True,
            label="Use Blush regularisation?",
            help="Replace the smoothness prior by the Blush denoiser: each half set's reference is "
            "its denoised reconstruction. Helps most for small particles and low SNR; the "
            "gold-standard FSC still comes from the raw half maps.",
        )
        form.addParam(
            "blushWeights",
            params.FileParam,
            default="",
            condition="useBlush",
            allowsNull=True,
            label="Denoiser weights (optional)",
            expertLevel=params.LEVEL_ADVANCED,
            help="Our .safetensors weights (blush train), or RELION's blush_v1.0.ckpt[.gz]; "
            "empty: the weights shipped with the plugin.",
        )
        form.addParam(
            "blushFromResolution",
            params.FloatParam,
            default=TRAINED_RESOLUTION_MAX,
            condition="useBlush",
            label="Blush from resolution (Å)",
            expertLevel=params.LEVEL_ADVANCED,
            help="Blush's references start once the gold-standard resolution reaches this; the "
            f"standard prior before. {TRAINED_RESOLUTION_MAX:g} Å is the coarsest the shipped "
            "denoiser was trained on "
            "(on a pseudo-symmetric 17 kDa protein at low SNR, Blush from the first iteration "
            "let mirror views mix: 11.1 Å against 10.2 Å). 0: from the first iteration, as "
            "RELION 5.",
        )
        form.addParam(
            "blushSkipSpectralTrailing",
            params.BooleanParam,
            default=False,
            condition="useBlush",
            label="Skip spectral trailing?",
            expertLevel=params.LEVEL_ADVANCED,
            help="Keep the denoiser's detail beyond the FSC = 1/7 resolution. This inflates the "
            "gold-standard FSC: for diagnosis only.",
        )
        form.addSection(label="Sampling")
        form.addParam(
            "angularSamplingDeg",
            params.EnumParam,
            choices=SAMPLINGS,
            default=1,
            label="Initial angular sampling (deg)",
            help="Angular step of the HEALPix orientation grid in the first iterations; "
            "auto-sampling makes it finer as the resolution improves. Default here 15 deg; "
            "RELION's form: 7.5 deg.",
        )
        form.addParam(
            "offsetSearchRangePix",
            params.FloatParam,
            default=5,
            label="Offset search range (px)",
            help="Translations are searched up to this distance (in pixels) from each particle's "
            "current offset in the first iterations. 5 px, as RELION's form.",
        )
        form.addParam(
            "offsetSearchStepPix",
            params.FloatParam,
            default=2,
            label="Offset search step (px)",
            help="Step (in pixels) of the translation grid in the first iterations; auto-sampling "
            "makes it finer. Default here 2 px; RELION's form: 1 px.",
        )
        form.addParam(
            "localSearchAutoSamplingDeg",
            params.EnumParam,
            choices=SAMPLINGS,
            default=2,
            label="Local searches from auto-sampling (deg)",
            expertLevel=params.LEVEL_ADVANCED,
            help="Once auto-sampling reaches this angular step, orientations are searched only "
            "near each particle's previous one. Default here 7.5 deg; RELION's form: 1.8 deg.",
        )
        form.addParam(
            "maxIterations",
            params.IntParam,
            default=25,
            label="Maximum iterations",
            expertLevel=params.LEVEL_ADVANCED,
            help="A cap only: the refinement stops earlier once neither the resolution nor the "
            "poses improve. RELION's form has no such field (relion_refine's --auto_iter_max: "
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
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.refineStep)
        if self.doPostprocess.get():
            self._insertFunctionStep(self.postprocessStep)
        self._insertFunctionStep(self.createOutputStep)

    def convertInputStep(self):
        convert.particles_to_star(self.inputParticles.get(), self._getExtraPath("input_particles.star"))
        volume, _ = read_map(self.referenceVolume.get().getFileName())
        write_map(self._getExtraPath("reference.mrc"), volume, self.inputParticles.get().getSamplingRate())

    def refineStep(self):
        args = [
            "refine3d",
            "--particles",
            self._getExtraPath("input_particles.star"),
            "--ref",
            self._getExtraPath("reference.mrc"),
            "--out",
            self._getExtraPath(),
            "--sym",
            self.symmetryGroup.get(),
            "--ini-high",
            self.initialLowPassFilterA.get(),
            "--healpix-order",
            self.angularSamplingDeg.get() + 1,
            "--local-from-order",
            self.localSearchAutoSamplingDeg.get() + 1,
            "--offset-range",
            self.offsetSearchRangePix.get(),
            "--offset-step",
            self.offsetSearchStepPix.get(),
            "--max-iter",
            self.maxIterations.get(),
            "--continue",
        ]  # a re-run of an interrupted step resumes from its last iteration
        if self.maskDiameterA.get() > 0:
            args += ["--diameter", self.maskDiameterA.get()]
        if self.referenceMask.get() is not None:
            args += ["--mask", self.referenceMask.get().getFileName()]
        if self.useBlush.get():
            args += ["--blush"]
            if self.blushWeights.get():
                args += ["--blush-weights", self.blushWeights.get()]
            args += ["--blush-from-resolution", self.blushFromResolution.get()]
            if self.blushSkipSpectralTrailing.get():
                args += ["--blush-skip-spectral-trailing"]
        self._runEngine(args, distributed=True)

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

    # --- helpers -------------------------------------------------------------------------------
    def _summaryFile(self) -> str:
        return self._getExtraPath("summary.json")

    # --- info ----------------------------------------------------------------------------------
    def _validate(self):
        particles, reference = self.inputParticles.get(), self.referenceVolume.get()
        if particles is None or reference is None:
            return ["Input not ready: particles and an initial reference are needed."]
        errors = []
        if not particles.hasCTF():
            errors.append("The particles have no CTF: estimate or import it first.")
        if particles.getSize() < 2:
            errors.append("At least two particles are needed for the gold-standard half sets.")
        first = particles.getFirstItem()
        if first is not None and not first.getFileName().lower().endswith(convert.MRC_EXTENSIONS):
            errors.append(f"Particle images must be MRC stacks; found {first.getFileName()}.")
        if reference.getXDim() != particles.getXDim():
            errors.append(
                f"The reference is {reference.getXDim()} px, the particles {particles.getXDim()} px."
            )
        if (
            abs(reference.getSamplingRate() - particles.getSamplingRate())
            > 1e-3 * particles.getSamplingRate()
        ):
            errors.append(
                f"The reference pixel size {reference.getSamplingRate():.3f} Å differs from the "
                f"particles' {particles.getSamplingRate():.3f} Å."
            )
        if self.useBlush.get() and self.blushWeights.get() and not os.path.exists(self.blushWeights.get()):
            errors.append(f"Denoiser weights {self.blushWeights.get()} do not exist.")
        if self.useBlush.get() and self.blushFromResolution.get() < 0:
            errors.append("Blush from resolution must be 0 (from the first iteration) or a resolution in Å.")
        mask = self.referenceMask.get()
        if mask is not None and mask.getXDim() != particles.getXDim():
            errors.append(f"The mask is {mask.getXDim()} px, the particles {particles.getXDim()} px.")
        try:
            symmetry_operators(self.symmetryGroup.get())
        except ValueError as e:
            errors.append(str(e))
        return errors

    def _summary(self):
        if not os.path.exists(self._summaryFile()):
            return ["Output not ready yet."]
        s = json.loads(Path(self._summaryFile()).read_text())
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
        s = json.loads(Path(self._summaryFile()).read_text())
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
            + (["Kimanius2024"] if self.useBlush.get() else [])
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
