"""The input that 3D auto-refine, 3D and 2D classification share: particles with CTF in MRC stacks
and their diameter, for the 3D ones a reference map and an optional solvent mask in the particles'
box; their checks, their conversion for the engine, and the engine's iterative run on them."""

from pyworkflow.protocol import params

from .. import convert
from ..engine.mrc import read_map, write_map
from ..engine.symmetry import symmetry_operators
from .engine_form import UNSET_IS_MINUS_ONE


class ParticlesInput:
    """Mixin (with EngineForm and EngineJob): the `inputParticles`, `maskDiameterA` (and
    `referenceVolume`, `referenceMask`) form parameters, their conversion step and checks, and the
    `blush <command>` call of an iterative driver on them."""

    def _defineParticlesInput(self, form):
        """The form's Input section: the engine's device choices, the particles."""
        form.addSection(label="Input")
        self._defineDeviceParams(form)
        form.addParam(
            "inputParticles",
            params.PointerParam,
            pointerClass="SetOfParticles",
            label="Input particles",
            help="Particles with CTF; MRC stacks.",
        )

    @staticmethod
    def _defineReferenceInput(form, label: str, help: str, mask_help: str):
        form.addParam("referenceVolume", params.PointerParam, pointerClass="Volume", label=label, help=help)
        form.addParam(
            "referenceMask",
            params.PointerParam,
            pointerClass="VolumeMask",
            allowsNull=True,
            label="Reference mask (optional)",
            help=mask_help,
        )

    def _addMaskDiameter(self, form):
        """The particles' diameter for the engine's soft solvent mask (with EngineForm)."""
        self._addSetting(
            form,
            "maskDiameterA",
            "diameter",
            label="Particle mask diameter (Å)",
            conversion=UNSET_IS_MINUS_ONE,
            note="-1: the engine's default. RELION's form asks for a diameter (default 200 Å).",
        )

    def _hasReference(self) -> bool:
        return hasattr(self, "referenceVolume")

    # --- steps ---------------------------------------------------------------------------------
    def convertInputStep(self):
        convert.particles_to_star(self.inputParticles.get(), self._getExtraPath("input_particles.star"))
        if self._hasReference():
            # the particles' pixel size in the header: an imported map's own header may say otherwise
            volume, _ = read_map(self.referenceVolume.get().getFileName())
            write_map(
                self._getExtraPath("reference.mrc"), volume, self.inputParticles.get().getSamplingRate()
            )

    def _runDriver(self, command: str, *args):
        """`blush COMMAND` on the converted input, with ARGS and the form's mirrored settings; --continue:
        a re-run of an interrupted step resumes from its last iteration."""
        inputs = ["--particles", self._getExtraPath("input_particles.star")]
        if self._hasReference():
            inputs += ["--ref", self._getExtraPath("reference.mrc")]
            if self.referenceMask.get() is not None:
                inputs += ["--mask", self.referenceMask.get().getFileName()]
        inputs += ["--out", self._getExtraPath()]
        self._runEngine([command, *inputs, *args, *self._settingArgs(), "--continue"], distributed=True)

    # --- checks --------------------------------------------------------------------------------
    def _inputErrors(self) -> list[str]:
        """What is wrong with the particles (and the reference and mask beside them)."""
        particles, errors = self.inputParticles.get(), []
        if not particles.hasCTF():
            errors.append("The particles have no CTF: estimate or import it first.")
        first = particles.getFirstItem()
        if first is not None and not first.getFileName().lower().endswith(convert.MRC_EXTENSIONS):
            errors.append(f"Particle images must be MRC stacks; found {first.getFileName()}.")
        if not self._hasReference():
            return errors
        box, apix, reference = particles.getXDim(), particles.getSamplingRate(), self.referenceVolume.get()
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
        return errors

    def _symmetryErrors(self) -> list[str]:
        try:
            symmetry_operators(self.symmetryGroup.get())
        except ValueError as e:
            return [str(e)]
        return []
