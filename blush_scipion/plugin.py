"""The Scipion plugin class: configuration variables and environment (citations: the package's
`_references`, in __init__)."""
import os
import shutil
import sys

import pwem
from pyworkflow.utils import Environ

from .constants import BLUSH_DEVICE, BLUSH_PROGRAM


class Plugin(pwem.Plugin):
    _url = "https://github.com/scipion-em/scipion-em-blush"
    _processingField = ["SPA"]

    @classmethod
    def _defineVariables(cls):
        cls._defineVar(BLUSH_DEVICE, "cpu", description="torch device for Blush jobs: cpu or cuda:N")

    @classmethod
    def getEnviron(cls):
        """The engine runs in Scipion's own Python environment: nothing to add."""
        return Environ(os.environ)

    @classmethod
    def getProgram(cls) -> str:
        """The engine's command line: the `blush` script beside this Python, else on PATH."""
        beside = os.path.join(os.path.dirname(sys.executable), BLUSH_PROGRAM)
        return beside if os.path.exists(beside) else (shutil.which(BLUSH_PROGRAM) or BLUSH_PROGRAM)

    @classmethod
    def defineBinaries(cls, env):
        """Nothing to download: the engine is this package's Python code (torch from pip)."""


# pyworkflow locates a plugin's package through its class's module: present it as the package's.
Plugin.__module__ = "blush_scipion"
