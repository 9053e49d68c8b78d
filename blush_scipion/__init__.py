"""scipion-em-blush: Blush regularization for cryo-EM refinement in Scipion.

Scipion finds this package through the `pyworkflow.plugin` entry point and reads `Plugin` from
it. `Plugin` is resolved lazily so that the engine (`blush_scipion.engine`, the `blush` command)
imports without pulling in Scipion.
"""

__version__ = "0.1.0"

# The package's own citations: pyworkflow reads `_references` from the package module (its keys resolve
# in bibtex.py) and lists them under every protocol's "Package references".
_references = ["Kimanius2024", "Scheres2012"]


def __getattr__(name):
    if name == "Plugin":
        from .plugin import Plugin

        return Plugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
