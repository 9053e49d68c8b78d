"""The input that post-processing and local resolution share: a map carrying its two half maps (as
3D auto-refine outputs it) and an optional solvent mask, with the checks both need."""

from pyworkflow.protocol import params


class HalfMapsInput:
    """Mixin: the `inputVolume` and `solventMask` form parameters, the half maps' paths, validation."""

    @staticmethod
    def _defineHalfMapsInput(form, mask_help: str):
        form.addParam(
            "inputVolume",
            params.PointerParam,
            pointerClass="Volume",
            label="Map with half maps",
            help="A refined map that carries its two unfiltered, unmasked half maps (as the output "
            "of 3D auto-refine, or a map imported with 'Set half maps'); its pixel size (Å) "
            "is used.",
        )
        form.addParam(
            "solventMask",
            params.PointerParam,
            pointerClass="VolumeMask",
            allowsNull=True,
            label="Solvent mask (optional)",
            help=mask_help,
        )

    def _halfMapArgs(self) -> list:
        half1, half2 = self.inputVolume.get().getHalfMaps().split(",")
        args = ["--half1", half1, "--half2", half2, "--angpix", self.inputVolume.get().getSamplingRate()]
        if self.solventMask.get() is not None:
            args += ["--mask", self.solventMask.get().getFileName()]
        return args

    def _validateHalfMaps(self) -> list:
        volume, mask = self.inputVolume.get(), self.solventMask.get()
        if volume is None:
            return ["Input not ready: a map with half maps is needed."]
        if not volume.hasHalfMaps():
            return [
                (
                    f"{volume.getFileName()} carries no half maps: the two unfiltered half maps are needed "
                    f"(use the output of a 3D refinement, or import the map with 'Set half maps')."
                )
            ]
        if mask is not None and mask.getDim() != volume.getDim():
            return [f"The mask is {mask.getDim()} px, the map {volume.getDim()} px."]
        return []

    def _sourceRelations(self, *outputs):
        """Each output derives from the map (and the mask, when one was given)."""
        for out in outputs:
            self._defineSourceRelation(self.inputVolume, out)
            if self.solventMask.get() is not None:
                self._defineSourceRelation(self.solventMask, out)
