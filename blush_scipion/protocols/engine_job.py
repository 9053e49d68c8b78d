"""What every protocol that runs the engine shares: GPU, thread and process choices, the runJob
call (so Scipion's queue submission and GPU selection apply), and the summary.json a run ends with.
Several processes are torch.distributed ranks started by torchrun (one per listed GPU, or the form's
MPI count on CPUs), never mpirun."""

import json
import os
from pathlib import Path

from pyworkflow.protocol import params
from pyworkflow.protocol.constants import GPU_LIST, USE_GPU

from ..plugin import Plugin


class EngineJob:
    """Mixin for Scipion protocols that call `blush <command>`."""

    _stepNames: tuple[str, ...] = ()  # the protocol's steps by method name, in order (Scipion runs them so)

    def _insertAllSteps(self):
        for name in self._stepNames:
            self._insertFunctionStep(getattr(self, name))

    @staticmethod
    def _defineDeviceParams(form):
        form.addHidden(
            USE_GPU,
            params.BooleanParam,
            default=False,
            label="Use GPU?",
            help="Run the engine on a CUDA GPU instead of the CPU.",
        )
        form.addHidden(
            GPU_LIST,
            params.StringParam,
            default="0",
            label="GPU ID",
            help="GPUs to use, separated by spaces. Commands that run on several processes "
            "(3D auto-refine, 2D classification) take one per GPU listed; the others the first.",
        )

    def _gpus(self) -> list[str]:
        return getattr(self, GPU_LIST).get().split() if getattr(self, USE_GPU).get() else []

    def _device(self) -> str:
        return f"cuda:{self._gpus()[0]}" if self._gpus() else "cpu"

    def _ranks(self) -> int:
        """Processes for a command that can share its particles: one per listed GPU, else the form's
        MPI count."""
        if self._gpus():
            return len(self._gpus())
        return max(1, self.numberOfMpi.get()) if hasattr(self, "numberOfMpi") else 1

    def _runEngine(self, args: list, device: bool = True, distributed: bool = False):
        """`blush ARGS`, in the environment BLUSH_ENV_ACTIVATION activates when set (Plugin.getEngineCommand);
        `device=False` for commands that run on the CPU only (no --device option); `distributed` for those
        that run as torch.distributed ranks (started by torchrun)."""
        env = Plugin.getEnviron()
        ranks = self._ranks() if distributed else 1
        threads = max(1, self.numberOfThreads.get())
        if ranks > 1 and self._gpus():  # a queue job holds MPI x threads cores, MPI being 1 with GPUs: shared
            threads = max(1, threads // ranks)
        env["OMP_NUM_THREADS"] = str(threads)
        if device:
            args = args + ["--device", self._device() if ranks == 1 or not self._gpus() else "cuda"]
        if ranks > 1 and self._gpus():  # rank i takes cuda:i of these
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self._gpus())
        # bash, not sh, for an activation (`source`, conda's bash hook); numberOfMpi=1: pyworkflow would
        # otherwise wrap the command in mpirun
        shell = "/bin/bash" if Plugin.getActivation() and os.path.exists("/bin/bash") else None
        self.runJob(
            Plugin.getEngineCommand(ranks), " ".join(map(str, args)), env=env, numberOfMpi=1, executable=shell
        )

    def _summaryFile(self) -> str:
        """The summary.json an engine command ends with where it produces a folder (its extra/)."""
        return self._getExtraPath("summary.json")

    def _readSummary(self) -> dict:
        return json.loads(Path(self._summaryFile()).read_text())
