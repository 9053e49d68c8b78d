"""How our protocols are named in Scipion's window: the protocol tree, the runs list, the Methods tab."""

from ..constants import PLUGIN_LABEL


class PluginLabel:
    """Mixin: labels prefixed "Blush for Scipion - ". pyworkflow prefixes the package name instead, a new
    run takes that label as its name, and the Methods tab writes the name between underscores as italics:
    the underscore in `blush_scipion` ended the italics after "blush" and left the rest mangled."""

    @classmethod
    def getClassLabel(cls, prependPackageName=True):
        label = super().getClassLabel(prependPackageName=False)
        return f"{PLUGIN_LABEL} - {label}" if prependPackageName else label
