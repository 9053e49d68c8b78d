"""Blush denoising of a refined map's half maps."""

import json
import os
from pathlib import Path

from pwem.objects import Volume
from pwem.protocols import ProtAnalysis3D
from pyworkflow.protocol import params

from ..reports.denoise import write_denoise_png
from .engine_job import EngineJob
from .label import PluginLabel


class ProtBlushDenoise(PluginLabel, EngineJob, ProtAnalysis3D):
    """Denoise a map from its two half maps with the Blush 3D U-Net: the half maps' average is
    denoised block by block and low-passed where their FSC falls below 1/7 (spectral trailing),
    so the result shows no detail the data do not support."""

    _label = "denoise (Blush)"
    _possibleOutputs = {"outputVolume": Volume}
    _references = ["Kimanius2024"]
    _stepNames = ("denoiseStep", "createOutputStep")

    def _defineParams(self, form):
        form.addSection(label="Input")
        self._defineDeviceParams(form)
        form.addParam(
            "inputVolume",
            params.PointerParam,
            pointerClass="Volume",
            label="Map with half maps",
            help="A refined map that carries its two unfiltered half maps (as 3D auto-refine outputs).",
        )
        form.addParam(
            "maskDiameterA",
            params.FloatParam,
            default=-1,
            label="Particle diameter (Å)",
            help="The denoiser's inputs are masked by a soft sphere of this diameter; -1: 90% of the box.",
        )
        form.addParam(
            "weights",
            params.FileParam,
            default="",
            allowsNull=True,
            label="Denoiser weights (optional)",
            expertLevel=params.LEVEL_ADVANCED,
            help="Our .safetensors weights, or RELION's blush_v1.0.ckpt[.gz]; empty: the shipped ones.",
        )
        form.addParam(
            "skipSpectralTrailing",
            params.BooleanParam,
            default=False,
            label="Skip spectral trailing?",
            expertLevel=params.LEVEL_ADVANCED,
            help="Keep the denoiser's output beyond the half maps' resolution (not supported by the data).",
        )
        form.addParallelSection(threads=1, mpi=0)

    def denoiseStep(self):
        half1, half2 = self.inputVolume.get().getHalfMaps().split(",")
        args = ["denoise", "--half1", half1, "--half2", half2, "--out", self._getExtraPath("denoised.mrc")]
        if self.maskDiameterA.get() > 0:
            args += ["--diameter", self.maskDiameterA.get()]
        if self.weights.get():
            args += ["--weights", self.weights.get()]
        if self.skipSpectralTrailing.get():
            args += ["--skip-spectral-trailing"]
        self._runEngine(args)

    def createOutputStep(self):
        volume = Volume(location=self._getExtraPath("denoised.mrc"))
        volume.setSamplingRate(self.inputVolume.get().getSamplingRate())
        write_denoise_png(self._getExtraPath)
        self._defineOutputs(outputVolume=volume)
        self._defineSourceRelation(self.inputVolume, volume)

    def _validate(self):
        volume = self.inputVolume.get()
        if volume is None:
            return ["Input not ready: a map with half maps is needed."]
        errors = []
        if not volume.hasHalfMaps():
            errors.append(
                f"{volume.getFileName()} carries no half maps: denoising needs the two half maps "
                f"(use the output of a 3D refinement)."
            )
        if self.weights.get() and not os.path.exists(self.weights.get()):
            errors.append(f"Denoiser weights {self.weights.get()} do not exist.")
        return errors

    def _summary(self):
        path = self._getExtraPath("denoised.json")
        if not os.path.exists(path):
            return ["Output not ready yet."]
        r = json.loads(Path(path).read_text())
        trailing = (
            f"low-passed at shell {r['trailing_shell']}"
            if r["trailing_shell"] is not None
            else "without spectral trailing"
        )
        return [
            f"Half maps at {r['resolution_0143']:.2f} Å (FSC 0.143); denoised with {r['weights']}, "
            f"{trailing}, in {r['seconds']:.1f} s.",
            "Plot: extra/slices.png.",
        ]

    def _methods(self):
        return [
            "The half maps were averaged and denoised with the Blush denoiser [Kimanius2024], low-passed at "
            "the resolution where their FSC falls below 1/7."
        ]
