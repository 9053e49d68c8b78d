"""Names shared by the plugin's protocols and viewers."""

BLUSH_DEVICE = "BLUSH_DEVICE"       # default torch device for the engine (cpu, cuda:0, ...)
BLUSH_PROGRAM = "blush"             # the engine's command line, installed beside Scipion's python
PLUGIN_LABEL = "Blush for Scipion"  # the plugin's name where users read it (labels, Methods)
