"""3D classification with the Blush engine, with or without Blush regularisation."""

import json
import os

from pwem.objects import SetOfClasses3D, SetOfVolumes, Volume
from pwem.protocols import ProtClassify3D
from pyworkflow.object import Float
from pyworkflow.protocol import params

from .. import convert
from ..engine.mrc import read_map, write_map
from ..engine.particles import Particles
from ..engine.symmetry import symmetry_operators
from ..reports.classes3d import write_class3d_pngs
from .engine_job import EngineJob
from .label import PluginLabel
from .protocol_refine3d import SAMPLINGS

ANGULAR_SAMPLING_HELP = (
    "Angular step of the orientation grid searched in every iteration: HEALPix order k gives 60 / 2^k deg "
    "(order 1: 30, order 2: 15, order 3: 7.5), directions and in-plane angle alike. Default here 15 deg "
    "(order 2). RELION's form: 7.5 deg, which RELION also runs as HEALPix order 2 but with oversampling 1 "
    "(each 15 deg pose refined at 7.5 deg); the engine has no oversampling, so choose 7.5 for RELION's "
    "finest step (eight times the orientations, and the time)."
)


class ProtBlushClassify3D(PluginLabel, EngineJob, ProtClassify3D):
    """3D classification as in RELION: expectation-maximisation over K classes, HEALPix orientations
    and translations with a Gaussian noise model; each class map is reconstructed from its
    particles (weighted by their class probabilities) and regularised by its power spectrum
    (tau2, scaled by T). All classes start from the one reference, low-pass filtered. With Blush,
    each class's reference is its reconstruction denoised by a 3D U-Net (Kimanius et al. 2024).
    Outputs the classes (each with its map and its particles, aligned) and the class maps."""

    _label = "3D classification"
    _possibleOutputs = {"outputClasses": SetOfClasses3D, "outputVolumes": SetOfVolumes}
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
            label="Reference map",
            help="Same box and pixel size as the particles. Every class starts from it, low-pass "
            "filtered (see below); a consensus refinement of the same particles is the usual "
            "choice.",
        )
        form.addParam(
            "referenceMask",
            params.PointerParam,
            pointerClass="VolumeMask",
            allowsNull=True,
            label="Reference mask (optional)",
            help="Solvent mask (0..1, same box) applied to the class maps instead of a sphere; "
            "focuses the classification on what it covers.",
        )
        form.addParam(
            "numberOfClasses",
            params.IntParam,
            default=4,
            label="Number of classes",
            help="Classes (K) to split the particles into; each needs enough particles for a map "
            "of its own (typically thousands). Default here 4; RELION's form: 1.",
        )
        form.addParam(
            "numberOfIterations",
            params.IntParam,
            default=25,
            label="Number of iterations",
            help="Iterations over all particles; 25, as RELION's form.",
        )
        form.addParam(
            "symmetryGroup",
            params.StringParam,
            default="C1",
            label="Symmetry",
            help="C<n>, D<n>, T, O or I (RELION's axis conventions), imposed on every class. C1, "
            "as RELION's form.",
        )
        form.addParam(
            "initialLowPassFilterA",
            params.FloatParam,
            default=60,
            label="Initial low-pass filter (Å)",
            help="The reference is low-pass filtered to this resolution before the first "
            "iteration, so that the classes do not inherit its fine detail. 60 Å, as "
            "RELION's form.",
        )
        form.addParam(
            "regularisation",
            params.FloatParam,
            default=4,
            label="Regularisation parameter T",
            help="RELION's tau2_fudge: how much the data are trusted against the smoothness prior; "
            "higher gives more detail and more noise. 4, as RELION's form for 3D.",
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
            default=False,
            label="Use Blush regularisation?",
            help="Replace the smoothness prior by the Blush denoiser: each class's reference is "
            "its denoised reconstruction (the denoised maps are written beside the class "
            "maps). Helps most for small particles and low SNR. No, as RELION 5's form.",
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
        form.addSection(label="Sampling")
        form.addParam(
            "angularSamplingDeg",
            params.EnumParam,
            choices=SAMPLINGS,
            default=1,
            label="Angular sampling interval (deg)",
            help=ANGULAR_SAMPLING_HELP,
        )
        form.addParam(
            "offsetSearchRangePix",
            params.FloatParam,
            default=5,
            label="Offset search range (px)",
            help="Translations are searched up to this distance (in pixels) from each particle's "
            "current offset. 5 px, as RELION's form.",
        )
        form.addParam(
            "offsetSearchStepPix",
            params.FloatParam,
            default=2,
            label="Offset search step (px)",
            help="Step (in pixels) of the translation grid. Default here 2 px; RELION's form: 1 px.",
        )
        form.addParam(
            "randomSeed",
            params.IntParam,
            default=0,
            label="Random seed",
            expertLevel=params.LEVEL_ADVANCED,
            help="Seed of the first iteration's random class assignment: the same seed and input "
            "give the same classes; another seed, another start. RELION's form has no such "
            "field (relion_refine's --random_seed).",
        )
        form.addParallelSection(threads=1, mpi=1)  # MPI: torch.distributed ranks on CPUs

    # --- steps ---------------------------------------------------------------------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.classifyStep)
        self._insertFunctionStep(self.createOutputStep)

    def convertInputStep(self):
        convert.particles_to_star(self.inputParticles.get(), self._getExtraPath("input_particles.star"))
        # the particles' pixel size in the header: an imported map's own header may say otherwise
        volume, _ = read_map(self.referenceVolume.get().getFileName())
        write_map(self._getExtraPath("reference.mrc"), volume, self.inputParticles.get().getSamplingRate())

    def classifyStep(self):
        args = [
            "class3d",
            "--particles",
            self._getExtraPath("input_particles.star"),
            "--ref",
            self._getExtraPath("reference.mrc"),
            "--out",
            self._getExtraPath(),
            "--k",
            self.numberOfClasses.get(),
            "--iter",
            self.numberOfIterations.get(),
            "--tau2-fudge",
            self.regularisation.get(),
            "--ini-high",
            self.initialLowPassFilterA.get(),
            "--sym",
            self.symmetryGroup.get(),
            "--healpix-order",
            self._healpixOrder(),
            "--offset-range",
            self.offsetSearchRangePix.get(),
            "--offset-step",
            self.offsetSearchStepPix.get(),
            "--seed",
            self.randomSeed.get(),
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
        self._runEngine(args, distributed=True)

    def _healpixOrder(self) -> int:
        return self.angularSamplingDeg.get() + 1  # SAMPLINGS starts at order 1

    def _classMap(self, k: int, blush: bool = False) -> str:
        return os.path.abspath(self._getExtraPath(f"run_class{k:03d}{'_blush' if blush else ''}.mrc"))

    def createOutputStep(self):
        particles = self.inputParticles.get()
        summary = self._readSummary()
        data = Particles.read(self._getExtraPath("run_data.star"))
        apix = data.pixel_size
        rows = iter(range(len(data)))  # run_data.star keeps the input's order: enabled particles by id

        def update_item(item, _row=None):
            i = next(rows)
            row = data.table.iloc[i]
            if row["rlnImageName"] != convert.image_name(item):  # never give a particle another's class
                raise ValueError(
                    f"run_data.star row {i + 1} is {row['rlnImageName']}, not particle "
                    f"{item.getObjId()} ({convert.image_name(item)})"
                )
            item.setClassId(int(row["rlnClassNumber"]))
            item.setTransform(convert.particle_from_row(data, i, apix).getTransform())
            if "rlnMaxValueProbDistribution" in row:  # as Scipion's RELION plugin keeps it
                item._rlnMaxValueProbDistribution = Float(float(row["rlnMaxValueProbDistribution"]))

        def update_class(cls):
            k = cls.getObjId()
            cls.setAlignmentProj()
            cls.getRepresentative().setLocation(self._classMap(k))
            cls.getRepresentative().setSamplingRate(apix)
            # the attribute names of Scipion's RELION plugin, so the same columns show in its tables
            cls._rlnClassDistribution = Float(summary["class_distribution"][k - 1])
            cls._rlnEstimatedResolution = Float(summary["class_resolution_angstrom"][k - 1])

        classes = self._createSetOfClasses3D(particles)
        classes.classifyItems(updateItemCallback=update_item, updateClassCallback=update_class)
        # every class map, the empty classes' too (a set of classes only holds classes with particles)
        volumes = self._createSetOfVolumes()
        volumes.setSamplingRate(apix)
        for k in range(1, summary["classes"] + 1):
            volume = Volume(location=self._classMap(k))
            volume.setSamplingRate(apix)
            volume.setObjId(k)
            volumes.append(volume)
        write_class3d_pngs(self._getExtraPath, self.getRunName())
        self._defineOutputs(outputClasses=classes, outputVolumes=volumes)
        for output in (classes, volumes):
            self._defineSourceRelation(self.inputParticles, output)
            self._defineSourceRelation(self.referenceVolume, output)

    # --- helpers -------------------------------------------------------------------------------
    def _summaryFile(self) -> str:
        return self._getExtraPath("summary.json")

    def _readSummary(self) -> dict:
        with open(self._summaryFile()) as f:
            return json.load(f)

    # --- info ----------------------------------------------------------------------------------
    def _validate(self):
        particles, reference = self.inputParticles.get(), self.referenceVolume.get()
        if particles is None or reference is None:
            return ["Input not ready: particles and a reference map are needed."]
        return self._inputErrors(particles, reference) + self._settingErrors(particles.getSize())

    def _inputErrors(self, particles, reference) -> list[str]:
        errors = []
        if not particles.hasCTF():
            errors.append("The particles have no CTF: estimate or import it first.")
        first = particles.getFirstItem()
        if first is not None and not first.getFileName().lower().endswith(convert.MRC_EXTENSIONS):
            errors.append(f"Particle images must be MRC stacks; found {first.getFileName()}.")
        box, apix = particles.getXDim(), particles.getSamplingRate()
        if reference.getXDim() != box:
            errors.append(f"The reference is {reference.getXDim()} px, the particles {box} px.")
        if abs(reference.getSamplingRate() - apix) > 1e-3 * apix:
            errors.append(
                f"The reference pixel size {reference.getSamplingRate():.3f} Å differs from the "
                f"particles' {apix:.3f} Å."
            )
        mask = self.referenceMask.get()
        if mask is not None and mask.getXDim() != box:
            errors.append(f"The mask is {mask.getXDim()} px, the particles {box} px.")
        if self.useBlush.get() and self.blushWeights.get() and not os.path.exists(self.blushWeights.get()):
            errors.append(f"Denoiser weights {self.blushWeights.get()} do not exist.")
        return errors

    def _settingErrors(self, n_particles: int) -> list[str]:
        errors = []
        k = self.numberOfClasses.get()
        if k < 1 or k > n_particles:
            errors.append(f"{k} classes cannot be made from {n_particles} particles.")
        if self.numberOfIterations.get() < 1:
            errors.append("At least one iteration is needed.")
        if self.initialLowPassFilterA.get() <= 0 or self.regularisation.get() <= 0:
            errors.append("The initial low-pass filter and the regularisation parameter T must be positive.")
        if self.offsetSearchRangePix.get() < 0 or self.offsetSearchStepPix.get() <= 0:
            errors.append("The offset search range must be >= 0 px and its step positive.")
        try:
            symmetry_operators(self.symmetryGroup.get())
        except ValueError as e:
            errors.append(str(e))
        return errors

    def _summary(self):
        if not os.path.exists(self._summaryFile()):
            return ["Output not ready yet."]
        s = self._readSummary()
        prior = ", Blush regularisation." if s.get("blush") else ", standard prior."
        lines = [
            f"{s['classes']} classes from {s['particles']} particles after {s['iterations']} iterations "
            f"({s['wall_seconds']:.0f} s){prior}"
        ]
        classes = zip(s["class_distribution"], s["class_resolution_angstrom"])
        lines += [
            f"class {k}: {100 * share:.1f}% of the particles, {res:.1f} Å"
            for k, (share, res) in enumerate(classes, 1)
        ]
        lines.append("Plots: extra/classes.png, extra/progress.png, extra/angles.png.")
        return lines

    def _methods(self):
        if not os.path.exists(self._summaryFile()):
            return []
        s = self._readSummary()
        run = s["settings"]  # what the engine ran with
        blush = " with Blush regularisation [Kimanius2024]" if s.get("blush") else ""
        return [
            f"{s['particles']} particles were classified into {s['classes']} 3D classes by "
            f"maximum-likelihood 3D classification [Scheres2012]{blush} over {s['iterations']} "
            f"iterations, with symmetry {run['symmetry']}, from a reference low-pass filtered to "
            f"{run['ini_high']:g} Å (regularisation parameter T = {run['tau2_fudge']:g})."
        ]

    def _citations(self):
        return self._references + (["Kimanius2024"] if self.useBlush.get() else [])
