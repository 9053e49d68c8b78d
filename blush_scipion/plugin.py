"""The Scipion plugin class: configuration variables and environment (citations: the package's
`_references`, in __init__)."""

import os
import shutil
import sys

import pwem
from pyworkflow.utils import Environ

from .constants import BLUSH_DEVICE, BLUSH_ENV_ACTIVATION, BLUSH_ENV_NAME, BLUSH_PROGRAM

ENGINE_MODULE = "blush_scipion.engine.cli"  # `python -m` of it is the `blush` command
# what the engine imports besides torch (pandas through starfile); Scipion's packages stay out
ENGINE_REQUIREMENTS = ["numpy", "scipy", "pandas", "mrcfile", "starfile", "gemmi", "safetensors", "tqdm"]


class Plugin(pwem.Plugin):
    _url = "https://github.com/scipion-em/scipion-em-blush"
    _processingField = ["SPA"]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(BLUSH_DEVICE, "cpu", description="torch device for Blush jobs: cpu or cuda:N")
        cls._defineVar(
            BLUSH_ENV_ACTIVATION,
            "",
            description="Shell command that activates an environment holding torch with your CUDA "
            f"and this package (e.g. 'conda activate {BLUSH_ENV_NAME}', made by "
            "'scipion installb blush'); empty: the engine runs in Scipion's Python.",
        )

    @classmethod
    def getActivation(cls) -> str:
        """BLUSH_ENV_ACTIVATION (Scipion's configuration, else the environment); '' when unset."""
        value = cls.getVar(BLUSH_ENV_ACTIVATION)
        if value is None:  # the plugin's variables are not registered yet
            value = os.environ.get(BLUSH_ENV_ACTIVATION, "")
        return value.strip()

    @classmethod
    def getEnviron(cls):
        """Scipion's environment; without PYTHONPATH when the engine runs in its own environment (Scipion's
        packages would shadow that environment's)."""
        env = Environ(os.environ)
        if cls.getActivation():
            env.pop("PYTHONPATH", None)
        return env

    @classmethod
    def getProgram(cls) -> str:
        """The engine's command line in this Python: the `blush` script beside it, else on PATH."""
        beside = os.path.join(os.path.dirname(sys.executable), BLUSH_PROGRAM)
        return beside if os.path.exists(beside) else (shutil.which(BLUSH_PROGRAM) or BLUSH_PROGRAM)

    @classmethod
    def getEngineCommand(cls, ranks: int = 1) -> str:
        """What precedes a command's arguments: `blush` in this Python (torchrun of it for several ranks);
        with BLUSH_ENV_ACTIVATION, `<activation> && python -m blush_scipion.engine.cli` in that environment
        (`python -m torch.distributed.run ... -m ...` for several ranks)."""
        activation = cls.getActivation()
        if activation:
            if activation.startswith("conda activate"):  # conda's shell hook first (as Scipion's plugins)
                hook = cls.getCondaActivationCmd() or 'eval "$(conda shell.bash hook)" &&'
                activation = f"{hook} {activation}"
            launch = "python -m "
            if ranks > 1:
                launch += f"torch.distributed.run --standalone --nproc-per-node={ranks} -m "
            return f"{activation} && {launch}{ENGINE_MODULE}"
        program = cls.getProgram()
        if ranks == 1:
            return program
        launcher = os.path.join(os.path.dirname(program), "torchrun")
        launcher = launcher if os.path.exists(launcher) else "torchrun"
        return f"{launcher} --standalone --nproc-per-node={ranks} --no-python {program}"

    @classmethod
    def defineBinaries(cls, env):
        """`scipion installb blush`: a conda environment with torch (pip's Linux wheels carry their CUDA
        runtime: only the NVIDIA driver is needed), the engine's dependencies and this package; then set
        BLUSH_ENV_ACTIVATION to 'conda activate blush-VERSION'. Optional: the engine also runs in Scipion's
        own Python when torch is installed there."""
        from . import __version__

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        this = (
            f"-e {root}"
            if os.path.exists(os.path.join(root, "setup.py"))
            else f"scipion-em-blush=={__version__}"
        )
        done = "blush_env_installed"
        run = f"conda run -n {BLUSH_ENV_NAME} python"  # no shell hook needed, unlike `conda activate`
        steps = [
            f"conda create -y -n {BLUSH_ENV_NAME} python=3.11 pip",
            f"{run} -m pip install 'torch>=2.1' " + " ".join(ENGINE_REQUIREMENTS),
            f"{run} -m pip install --no-deps {this}",  # Scipion's packages stay out of the engine's env
            f"{run} -c 'import torch, {ENGINE_MODULE}'",
            f"touch {done}",
        ]
        command = f"{cls.getCondaActivationCmd() or ''} " + " && ".join(steps)
        path = os.environ.get("PATH", "")
        env.addPackage(
            "blush",
            version=__version__,
            tar="void.tgz",
            commands=[(command.strip(), done)],
            neededProgs=[] if cls.getCondaActivationCmd() else ["conda"],
            default=False,
            vars={"PATH": path} if path else None,
        )


# pyworkflow locates a plugin's package through its class's module: present it as the package's.
Plugin.__module__ = "blush_scipion"
