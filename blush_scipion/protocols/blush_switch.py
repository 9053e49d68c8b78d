"""Blush as the drivers' forms offer it (3D auto-refine, 3D and 2D classification): a switch and the
denoiser's weights, mirrored from the engine's `blush` and `blush_weights` settings, their check, and
the citation a run with Blush owes."""

import os

from pyworkflow.protocol import params

from .engine_form import UNSET_IS_EMPTY


class BlushSwitch:
    """Mixin (with EngineForm): the "Blush" section's `useBlush` and `blushWeights` parameters."""

    def _defineBlushSection(
        self,
        form,
        label: str,
        note: str,
        weights_label: str = "Denoiser weights (optional)",
        weights_note: str = "Our .safetensors weights come from 'train denoiser'.",
        **kwargs,
    ):
        """kwargs: what the switch adds (a default of its own)."""
        form.addSection(label="Blush")
        self._addSetting(form, "useBlush", "blush", label=label, note=note, **kwargs)
        self._addSetting(
            form,
            "blushWeights",
            "blush_weights",
            label=weights_label,
            conversion=UNSET_IS_EMPTY,
            paramClass=params.FileParam,
            condition="useBlush",
            allowsNull=True,
            expertLevel=params.LEVEL_ADVANCED,
            note=weights_note,
        )

    def _blushWeightsErrors(self) -> list[str]:
        weights = self.blushWeights.get()
        if self.useBlush.get() and weights and not os.path.exists(weights):
            return [f"Denoiser weights {weights} do not exist."]
        return []

    def _blushCitations(self) -> list[str]:
        return ["Kimanius2024"] if self.useBlush.get() else []
