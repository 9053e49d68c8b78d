"""Fine-tune the Blush denoiser on the user's own half maps."""

import json
import os
from pathlib import Path

from pwem.objects import EMFile
from pwem.protocols import EMProtocol
from pyworkflow.protocol import params

from ..reports.train import write_train_png
from .engine_job import EngineJob
from .label import PluginLabel


class ProtBlushTrain(PluginLabel, EngineJob, EMProtocol):
    """Fine-tune the Blush denoiser on half-map pairs from your own refinements (noise2noise: one
    half in, the other as target, so only the signal the halves share is learnt). Starts from the
    shipped weights or given ones; the result plugs into 3D auto-refine's "Denoiser weights"."""

    _label = "train denoiser (Blush)"
    _possibleOutputs = {"outputWeights": EMFile}
    _references = ["Kimanius2024"]
    _stepNames = ("trainStep", "createOutputStep")

    def _defineParams(self, form):
        form.addSection(label="Input")
        self._defineDeviceParams(form)
        form.addParam(
            "inputVolumes",
            params.MultiPointerParam,
            pointerClass="Volume",
            label="Maps with half maps",
            help="Refined maps carrying their two unfiltered half maps.",
        )
        form.addParam(
            "maskDiameterA",
            params.FloatParam,
            default=-1,
            label="Particle diameter (Å)",
            help="Inputs are masked by a soft sphere of this diameter; -1: 90% of the box.",
        )
        form.addParam(
            "initWeights",
            params.FileParam,
            default="",
            allowsNull=True,
            label="Start from (optional)",
            help="Weights to fine-tune (.safetensors, or RELION's blush_v1.0.ckpt.gz); empty: the "
            "shipped ones.",
        )
        form.addParam(
            "steps",
            params.IntParam,
            default=300,
            label="Optimiser steps",
            help=(
                "Each step is two blocks; about a second per step on a CPU core pair, milliseconds on a GPU."
            ),
        )
        form.addParam(
            "learningRate",
            params.FloatParam,
            default=3e-4,
            label="Learning rate",
            expertLevel=params.LEVEL_ADVANCED,
            help="Peak of the cosine schedule; low for fine-tuning.",
        )
        form.addParallelSection(threads=2, mpi=0)

    def _weightsFile(self) -> str:
        return self._getExtraPath("blush_finetuned.safetensors")

    def trainStep(self):
        pairs = [path for v in self._volumes() for path in v.getHalfMaps().split(",")]
        args = [
            "train",
            "--pairs",
            *pairs,
            "--out",
            self._weightsFile(),
            "--steps",
            self.steps.get(),
            "--lr",
            self.learningRate.get(),
        ]
        if self.initWeights.get():
            args += ["--init", self.initWeights.get()]
        if self.maskDiameterA.get() > 0:
            args += ["--diameter", self.maskDiameterA.get()]
        self._runEngine(args)

    def createOutputStep(self):
        weights = EMFile(filename=self._weightsFile())
        write_train_png(self._getExtraPath, os.path.basename(self._weightsFile()))
        self._defineOutputs(outputWeights=weights)
        for pointer in self.inputVolumes:
            self._defineSourceRelation(pointer, weights)

    def _volumes(self):
        return [pointer.get() for pointer in self.inputVolumes]

    def _validate(self):
        errors = []
        volumes = self._volumes()
        if not volumes:
            return ["Input not ready: at least one map with half maps is needed."]
        for v in volumes:
            if not v.hasHalfMaps():
                errors.append(f"{v.getFileName()} carries no half maps (use the output of a 3D refinement).")
        if self.initWeights.get() and not os.path.exists(self.initWeights.get()):
            errors.append(f"Weights {self.initWeights.get()} do not exist.")
        if self.steps.get() < 1:
            errors.append("At least one optimiser step is needed.")
        return errors

    def _summary(self):
        log = self._weightsFile() + ".json"
        if not os.path.exists(log):
            return ["Output not ready yet."]
        r = json.loads(Path(log).read_text())
        losses = r["losses"]
        lines = [
            f"Fine-tuned on {len(r['sources']) // 2} half-map pair(s), {r['steps_done']} steps in "
            f"{r['seconds']:.0f} s; loss {losses[0]:.3f} -> {sum(losses[-10:]) / len(losses[-10:]):.3f}.",
        ]
        validation = r.get("validation")  # absent from logs written before the engine validated
        if validation:
            first, last = validation[0], validation[-1]
            lines.append(
                f"Validation loss ({r['settings'].get('validation_samples')} fixed blocks, drawn apart from "
                f"the training's): {first['loss']:.3f} at step {first['step']} -> {last['loss']:.3f} at "
                f"step {last['step']}."
            )
        return lines + [f"Weights: {self._weightsFile()}", "Plot: extra/loss.png."]

    def _methods(self):
        return [
            "The Blush denoiser [Kimanius2024] was fine-tuned on the half maps of our refinements "
            "(one half as input, the other as target)."
        ]
