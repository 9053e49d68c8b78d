"""What every protocol that runs the engine shares: GPU and thread choices, and the runJob call
(so Scipion's queue submission and GPU selection apply)."""
from pyworkflow.protocol import params
from pyworkflow.protocol.constants import GPU_LIST, USE_GPU

from ..plugin import Plugin


class EngineJob:
    """Mixin for Scipion protocols that call `blush <command>`."""

    @staticmethod
    def _defineDeviceParams(form):
        form.addHidden(USE_GPU, params.BooleanParam, default=False, label="Use GPU?",
                       help="Run the engine on a CUDA GPU instead of the CPU.")
        form.addHidden(GPU_LIST, params.StringParam, default="0", label="GPU ID",
                       help="The engine uses the first GPU listed.")

    def _device(self) -> str:
        if getattr(self, USE_GPU).get() and getattr(self, GPU_LIST).get().strip():
            return f"cuda:{getattr(self, GPU_LIST).get().split()[0]}"
        return "cpu"

    def _runEngine(self, args: list, device: bool = True):
        """`blush ARGS`; `device=False` for commands that run on the CPU only (no --device option)."""
        env = Plugin.getEnviron()
        env["OMP_NUM_THREADS"] = str(max(1, self.numberOfThreads.get()))
        args = args + (["--device", self._device()] if device else [])
        self.runJob(Plugin.getProgram(), " ".join(map(str, args)), env=env)
