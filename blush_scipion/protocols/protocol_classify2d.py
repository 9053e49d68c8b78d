"""2D classification with the Blush engine, with or without Blush for 2D."""

import os

from pwem.objects import SetOfClasses2D
from pwem.protocols import ProtClassify2D
from pyworkflow.protocol import params

from .. import convert
from ..engine.classify2d import Class2DSettings
from ..engine.particles import Particles
from ..reports.classes import write_class2d_pngs
from .blush_switch import BlushSwitch
from .engine_form import EngineForm
from .engine_job import EngineJob
from .label import PluginLabel
from .particles_input import ParticlesInput


class ProtBlushClassify2D(PluginLabel, ParticlesInput, BlushSwitch, EngineForm, EngineJob, ProtClassify2D):
    """2D classification as in RELION: expectation-maximisation over classes, in-plane rotations
    and translations with a Gaussian noise model, CTF-weighted class averages regularised by their
    power spectrum, classes re-centred. With Blush for 2D (ours; RELION has none), each class
    average is denoised between iterations by a 2D U-Net trained on projections of simulated half
    maps, and low-passed where the class's SSNR ends."""

    _label = "2D classification"
    _possibleOutputs = {"outputClasses": SetOfClasses2D}
    _references = ["Scheres2012"]
    _stepNames = ("convertInputStep", "classifyStep", "createOutputStep")
    _settings = Class2DSettings

    def _defineParams(self, form):
        self._defineParticlesInput(form)
        self._addSetting(
            form,
            "numberOfClasses",
            "classes",
            label="Number of classes",
            default=20,
            note="As a rule of thumb, at least a few hundred particles per class. Default here 20; "
            "RELION's form: 1.",
        )
        self._addSetting(
            form,
            "useGradientAlg",
            "grad",
            label="Use mini-batches (VDAM)?",
            note="Each iteration visits a random mini-batch (RELION 4's VDAM schedule: 0.5% of the set "
            "growing to 10%). No: every iteration visits all particles; RELION's form (4.0 on): Yes.",
        )
        # not mirrored: the engine's --iter default depends on --grad, so it declares none
        form.addParam(
            "numberOfIterations",
            params.IntParam,
            default=25,
            label="Number of iterations",
            condition="not useGradientAlg",
            help="Iterations over all particles; 25, as RELION's form for its EM algorithm.",
        )
        form.addParam(
            "numberOfVDAMBatches",
            params.IntParam,
            default=200,
            label="Number of mini-batches",
            condition="useGradientAlg",
            help="Mini-batch iterations; 200, as RELION's form for VDAM.",
        )
        self._addMaskDiameter(form)
        self._addSetting(
            form,
            "regularisation",
            "tau2_fudge",
            label="Regularisation parameter T",
            expertLevel=params.LEVEL_ADVANCED,
            note="RELION's tau2_fudge; 2, as RELION's form.",
        )
        self._addSetting(
            form,
            "centerClasses",
            "center_classes",
            label="Center class averages?",
            expertLevel=params.LEVEL_ADVANCED,
            note="Yes re-centres each class average on its centre of mass every iteration, so that "
            "classes do not drift off-centre (No passes the flag). Yes, as RELION's form.",
        )
        self._defineBlushSection(
            form,
            "Use Blush for 2D?",
            "Ours; RELION has none. Meant for small particles at low SNR.",
            "2D denoiser weights (optional)",
            "As `blush train --dim 2` writes them.",
        )
        form.addSection(label="Sampling")
        self._addSetting(
            form,
            "psiStepDeg",
            "psi_step",
            label="In-plane angular sampling (deg)",
            note="6 deg, as RELION's form.",
        )
        self._addSetting(
            form,
            "offsetSearchRangePix",
            "offset_range",
            label="Offset search range (px)",
            note="From each particle's current offset; 5 px, as RELION's form.",
        )
        self._addSetting(
            form,
            "offsetSearchStepPix",
            "offset_step",
            label="Offset search step (px)",
            note="1 px, as RELION's form.",
        )
        form.addParallelSection(threads=1, mpi=1)  # MPI: torch.distributed ranks on CPUs

    # --- steps ---------------------------------------------------------------------------------
    def classifyStep(self):
        self._runDriver("class2d", "--iter", self._iterations())

    def _iterations(self) -> int:
        return self.numberOfVDAMBatches.get() if self.useGradientAlg.get() else self.numberOfIterations.get()

    def createOutputStep(self):
        particles = self.inputParticles.get()
        data = Particles.read(self._getExtraPath("run_data.star"))
        rows = iter(range(len(data)))
        averages = os.path.abspath(self._getExtraPath("run_classes.mrcs"))
        apix = data.pixel_size

        def update_item(item, _row=None):
            i = next(rows)
            row = data.table.iloc[i]
            item.setClassId(int(row["rlnClassNumber"]))
            item.setTransform(
                convert.transform_2d(
                    float(row["rlnAnglePsi"]),
                    float(row["rlnOriginXAngst"]) / apix,
                    float(row["rlnOriginYAngst"]) / apix,
                )
            )

        def update_class(cls):
            k = cls.getObjId()
            cls.setAlignment2D()
            cls.getRepresentative().setLocation(k, averages)
            cls.getRepresentative().setSamplingRate(apix)

        classes = self._createSetOfClasses2D(particles)
        classes.classifyItems(updateItemCallback=update_item, updateClassCallback=update_class)
        write_class2d_pngs(self._getExtraPath, self.getRunName())
        self._defineOutputs(outputClasses=classes)
        self._defineSourceRelation(self.inputParticles, classes)

    # --- info ----------------------------------------------------------------------------------
    def _validate(self):
        particles = self.inputParticles.get()
        if particles is None:
            return ["Input not ready: particles are needed."]
        errors = self._inputErrors() + self._blushWeightsErrors()
        k = self.numberOfClasses.get()
        if k < 1 or k > particles.getSize():
            errors.append(f"{k} classes cannot be made from {particles.getSize()} particles.")
        if self._iterations() < 1:
            errors.append("At least one iteration is needed.")
        if self.psiStepDeg.get() <= 0 or self.offsetSearchStepPix.get() <= 0:
            errors.append("Angular and offset steps must be positive.")
        return errors

    def _summary(self):
        if not os.path.exists(self._summaryFile()):
            return ["Output not ready yet."]
        s = self._readSummary()
        populated = sum(d > 0.005 for d in s["class_distribution"])
        return [
            f"{s['classes']} classes ({populated} with more than 0.5% of the particles) from "
            f"{s['particles']} "
            f"particles after {s['iterations']} iterations ({s['wall_seconds']:.0f} s)"
            + (", Blush for 2D." if s.get("blush") else "."),
            f"Best class resolution {s['resolution_angstrom']:.1f} Å (SSNR 1).",
            "Plots: extra/classes.png, extra/progress.png.",
        ]

    def _methods(self):
        if not os.path.exists(self._summaryFile()):
            return []
        s = self._readSummary()
        blush = (
            (
                " Class averages were denoised between iterations by a 2D version of Blush "
                "regularisation [Kimanius2024]."
            )
            if s.get("blush")
            else ""
        )
        grad = s.get("settings", {}).get("grad")
        how = (
            f"over {s['iterations']} iterations of random mini-batches on RELION's VDAM schedule "
            f"[Kimanius2021], "
            f"as on-line EM [Cappe2009], the last over all particles"
            if grad
            else f"over {s['iterations']} iterations"
        )
        return [
            f"{s['particles']} particles were classified into {s['classes']} 2D classes by "
            f"maximum-likelihood "
            f"2D classification [Scheres2012] {how}.{blush}"
        ]

    def _citations(self):
        return (
            self._references
            + (["Kimanius2021", "Cappe2009"] if self.useGradientAlg.get() else [])
            + self._blushCitations()
        )
