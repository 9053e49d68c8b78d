"""3D classification with the Blush engine, with or without Blush regularisation."""

import os

from pwem.objects import SetOfClasses3D, SetOfVolumes, Volume
from pwem.protocols import ProtClassify3D
from pyworkflow.object import Float
from pyworkflow.protocol import params

from .. import convert
from ..engine.classify3d import Class3DSettings
from ..engine.particles import Particles
from ..reports.classes3d import write_class3d_pngs
from .blush_switch import BlushSwitch
from .engine_form import ORDER_FROM_ONE, EngineForm
from .engine_job import EngineJob
from .label import PluginLabel
from .particles_input import ParticlesInput
from .protocol_refine3d import SAMPLINGS


class ProtBlushClassify3D(PluginLabel, ParticlesInput, BlushSwitch, EngineForm, EngineJob, ProtClassify3D):
    """3D classification as in RELION: expectation-maximisation over K classes, HEALPix orientations
    and translations with a Gaussian noise model; each class map is reconstructed from its
    particles (weighted by their class probabilities) and regularised by its power spectrum
    (tau2, scaled by T). All classes start from the one reference, low-pass filtered. With Blush,
    each class's reference is its reconstruction denoised by a 3D U-Net (Kimanius et al. 2024).
    Outputs the classes (each with its map and its particles, aligned) and the class maps."""

    _label = "3D classification"
    _possibleOutputs = {"outputClasses": SetOfClasses3D, "outputVolumes": SetOfVolumes}
    _references = ["Scheres2012"]
    _stepNames = ("convertInputStep", "classifyStep", "createOutputStep")
    _settings = Class3DSettings

    def _defineParams(self, form):
        self._defineParticlesInput(form)
        self._defineReferenceInput(
            form,
            "Reference map",
            "Same box and pixel size as the particles. Every class starts from it, low-pass filtered (see "
            "below); a consensus refinement of the same particles is the usual choice.",
            "Solvent mask (0..1, same box) applied to the class maps instead of a sphere; focuses the "
            "classification on what it covers.",
        )
        self._addSetting(
            form,
            "numberOfClasses",
            "classes",
            label="Number of classes",
            note="Each needs enough particles for a map of its own (typically thousands). RELION's form: 1.",
        )
        self._addSetting(
            form,
            "numberOfIterations",
            "iterations",
            label="Number of iterations",
            note="Over all particles; 25, as RELION's form.",
        )
        self._addSetting(
            form,
            "symmetryGroup",
            "symmetry",
            label="Symmetry",
            note="Imposed on every class; C1, as RELION's form.",
        )
        self._addSetting(
            form,
            "initialLowPassFilterA",
            "ini_high",
            label="Initial low-pass filter (Å)",
            note="Before the first iteration, so that the classes do not inherit the reference's fine "
            "detail. 60 Å, as RELION's form.",
        )
        self._addSetting(
            form,
            "regularisation",
            "tau2_fudge",
            label="Regularisation parameter T",
            note="RELION's tau2_fudge: how much the data are trusted against the smoothness prior. 4, as "
            "RELION's form for 3D.",
        )
        self._addMaskDiameter(form)
        self._defineBlushSection(
            form,
            "Use Blush regularisation?",
            "The denoised maps are written beside the class maps. Helps most for small particles and "
            "low SNR. No, as RELION 5's form.",
        )
        form.addSection(label="Sampling")
        self._addSetting(
            form,
            "angularSamplingDeg",
            "healpix_order",
            label="Angular sampling interval (deg)",
            conversion=ORDER_FROM_ONE,
            paramClass=params.EnumParam,
            choices=SAMPLINGS,
            note="The same step in every iteration, directions and in-plane angle alike. The engine has "
            "no oversampling, so choose 7.5 for RELION's finest step (eight times the orientations, and "
            "the time).",
        )
        self._addSetting(
            form,
            "offsetSearchRangePix",
            "offset_range",
            label="Offset search range (px)",
            note="5 px, as RELION's form.",
        )
        self._addSetting(
            form,
            "offsetSearchStepPix",
            "offset_step",
            label="Offset search step (px)",
            note="RELION's form: 1 px.",
        )
        self._addSetting(
            form,
            "randomSeed",
            "seed",
            label="Random seed",
            expertLevel=params.LEVEL_ADVANCED,
            note="The same seed and input give the same classes; another seed, another start. RELION's form "
            "has no such field (relion_refine's --random_seed).",
        )
        form.addParallelSection(threads=1, mpi=1)  # MPI: torch.distributed ranks on CPUs

    # --- steps ---------------------------------------------------------------------------------
    def classifyStep(self):
        self._runDriver("class3d")

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

    # --- info ----------------------------------------------------------------------------------
    def _validate(self):
        particles, reference = self.inputParticles.get(), self.referenceVolume.get()
        if particles is None or reference is None:
            return ["Input not ready: particles and a reference map are needed."]
        return self._inputErrors() + self._blushWeightsErrors() + self._settingErrors(particles.getSize())

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
        return errors + self._symmetryErrors()

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
        return self._references + self._blushCitations()
