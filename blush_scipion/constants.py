"""Names shared by the plugin's protocols and viewers."""

from . import __version__

BLUSH_DEVICE = "BLUSH_DEVICE"  # default torch device for the engine (cpu, cuda:0, ...)
BLUSH_ENV_ACTIVATION = "BLUSH_ENV_ACTIVATION"  # shell command activating the engine's own environment
BLUSH_ENV_NAME = f"blush-{__version__}"  # the conda environment `scipion installb blush` creates
BLUSH_PROGRAM = "blush"  # the engine's command line, installed beside Scipion's python
PLUGIN_LABEL = "Blush for Scipion"  # the plugin's name where users read it (labels, Methods)
