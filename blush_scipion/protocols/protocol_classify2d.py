"""2D classification with the Blush engine, with or without Blush for 2D."""

import json
import os
from pathlib import Path

from pwem.objects import SetOfClasses2D
from pwem.protocols import ProtClassify2D
from pyworkflow.protocol import params

from .. import convert
from ..engine.particles import Particles
from ..reports.classes import write_class2d_pngs
from .engine_job import EngineJob
from .label import PluginLabel


class ProtBlushClassify2D(PluginLabel, EngineJob, ProtClassify2D):
    """2D classification as in RELION: expectation-maximisation over classes, in-plane rotations
    and translations with a Gaussian noise model, CTF-weighted class averages regularised by their
    power spectrum, classes re-centred. With Blush for 2D (ours; RELION has none), each class
    average is denoised between iterations by a 2D U-Net trained on projections of simulated half
    maps, and low-passed where the class's SSNR ends."""

    _label = "2D classification"
    _possibleOutputs = {"outputClasses": SetOfClasses2D}
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
            "numberOfClasses",
            params.IntParam,
            default=20,
            label="Number of classes",
            help="As a rule of thumb, at least a few hundred particles per class. Default here 20; "
            "RELION's form: 1.",
        )
        form.addParam(
            "useGradientAlg",
            params.BooleanParam,
            default=False,
            label="Use mini-batches (VDAM)?",
            help="For large sets: each iteration visits a random mini-batch (RELION 4's VDAM schedule: "
            "0.5% of the set growing to 10%), the last one every particle. Default here: No "
            "(every iteration visits all particles); RELION's form (4.0 on): Yes.",
        )
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
        form.addParam(
            "maskDiameterA",
            params.FloatParam,
            default=-1,
            label="Particle mask diameter (Å)",
            help="Diameter of the soft circular mask of images and class averages; -1: 90% of the "
            "box. RELION's form asks for a diameter (default 200 Å).",
        )
        form.addParam(
            "regularisation",
            params.FloatParam,
            default=2,
            label="Regularisation parameter T",
            expertLevel=params.LEVEL_ADVANCED,
            help="RELION's tau2_fudge: higher trusts the data more. 2, as RELION's form.",
        )
        form.addParam(
            "centerClasses",
            params.BooleanParam,
            default=True,
            label="Center class averages?",
            expertLevel=params.LEVEL_ADVANCED,
            help="Re-centre each class average on its centre of mass every iteration, so classes "
            "do not drift off-centre. Yes, as RELION's form.",
        )
        form.addSection(label="Blush")
        form.addParam(
            "useBlush",
            params.BooleanParam,
            default=False,
            label="Use Blush for 2D?",
            help="Denoise each class average between iterations with the 2D denoiser shipped with the "
            "plugin, low-passed at the class's resolution. Meant for small particles at low SNR.",
        )
        form.addParam(
            "blushWeights",
            params.FileParam,
            default="",
            condition="useBlush",
            allowsNull=True,
            label="2D denoiser weights (optional)",
            expertLevel=params.LEVEL_ADVANCED,
            help="`blush train --dim 2` weights (.safetensors); empty: the shipped ones.",
        )
        form.addSection(label="Sampling")
        form.addParam(
            "psiStepDeg",
            params.FloatParam,
            default=6,
            label="In-plane angular sampling (deg)",
            help="Step of the in-plane rotations searched; 6 deg, as RELION's form.",
        )
        form.addParam(
            "offsetSearchRangePix",
            params.FloatParam,
            default=5,
            label="Offset search range (px)",
            help="Translations are searched up to this distance (in pixels) from each particle's "
            "current offset; 5 px, as RELION's form.",
        )
        form.addParam(
            "offsetSearchStepPix",
            params.FloatParam,
            default=1,
            label="Offset search step (px)",
            help="Step (in pixels) of the translation search; 1 px, as RELION's form.",
        )
        form.addParallelSection(threads=1, mpi=1)  # MPI: torch.distributed ranks on CPUs

    # --- steps ---------------------------------------------------------------------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.classifyStep)
        self._insertFunctionStep(self.createOutputStep)

    def convertInputStep(self):
        convert.particles_to_star(self.inputParticles.get(), self._getExtraPath("input_particles.star"))

    def classifyStep(self):
        args = [
            "class2d",
            "--particles",
            self._getExtraPath("input_particles.star"),
            "--out",
            self._getExtraPath(),
            "--k",
            self.numberOfClasses.get(),
            "--iter",
            self._iterations(),
            "--tau2-fudge",
            self.regularisation.get(),
            "--psi-step",
            self.psiStepDeg.get(),
            "--offset-range",
            self.offsetSearchRangePix.get(),
            "--offset-step",
            self.offsetSearchStepPix.get(),
            "--continue",
        ]  # a re-run of an interrupted step resumes from its last iteration
        if self.maskDiameterA.get() > 0:
            args += ["--diameter", self.maskDiameterA.get()]
        if not self.centerClasses.get():
            args += ["--no-center"]
        if self.useGradientAlg.get():
            args += ["--grad"]
        if self.useBlush.get():
            args += ["--blush"]
            if self.blushWeights.get():
                args += ["--blush-weights", self.blushWeights.get()]
        self._runEngine(args, distributed=True)

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
    def _summaryFile(self) -> str:
        return self._getExtraPath("summary.json")

    def _validate(self):
        particles = self.inputParticles.get()
        if particles is None:
            return ["Input not ready: particles are needed."]
        errors = []
        if not particles.hasCTF():
            errors.append("The particles have no CTF: estimate or import it first.")
        k = self.numberOfClasses.get()
        if k < 1 or k > particles.getSize():
            errors.append(f"{k} classes cannot be made from {particles.getSize()} particles.")
        first = particles.getFirstItem()
        if first is not None and not first.getFileName().lower().endswith(convert.MRC_EXTENSIONS):
            errors.append(f"Particle images must be MRC stacks; found {first.getFileName()}.")
        if self._iterations() < 1:
            errors.append("At least one iteration is needed.")
        if self.psiStepDeg.get() <= 0 or self.offsetSearchStepPix.get() <= 0:
            errors.append("Angular and offset steps must be positive.")
        if self.useBlush.get() and self.blushWeights.get() and not os.path.exists(self.blushWeights.get()):
            errors.append(f"Denoiser weights {self.blushWeights.get()} do not exist.")
        return errors

    def _summary(self):
        if not os.path.exists(self._summaryFile()):
            return ["Output not ready yet."]
        s = json.loads(Path(self._summaryFile()).read_text())
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
        s = json.loads(Path(self._summaryFile()).read_text())
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
            + (["Kimanius2024"] if self.useBlush.get() else [])
        )
